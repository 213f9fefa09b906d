"""The background side of a collector, split by responsibility.

Data path::

    admission (intake) --append--> queue --flush thread: enrich, admit--> channel backlog
                                                                   --sink thread--> sink

* :mod:`.intake`: the one admission step on the caller's thread, the bounded queue, the
  fork check and the wake-up.
* :mod:`.enrich`: final ids, usage read from stored responses, price.
* :mod:`.admit`: sanitising and the user's filters.
* :mod:`.channels`: one bounded backlog and delivery thread per sink.
* :mod:`.accounting`: every counter, behind one lock, with drop reasons as an enum.

:class:`Pipeline` (:mod:`.core`) runs the flush thread and ties the parts together;
:mod:`.threads` owns the threads (start, restart, join). Roll-ups are a stage of the flush
thread: the windows that end become UsageMetrics processed as a batch of their own, straight
to the channels. The flush thread wakes
when a batch is full, when asked to flush or stop, and otherwise every
``batch_timeout_seconds``; it takes everything queued, in batches of ``batch_size``. A record
therefore waits at most the batch timeout plus processing time. An idle process wakes once
per timeout and does nothing else.

``flush()`` puts a marker in the queue. It travels behind every record accepted before it;
the flush thread forwards it to every channel, and each channel calls its sink's ``flush()``
when it gets there. The flush is complete when every channel has passed the marker.

Records are processed one by one on the flush thread, each behind a guard that costs
nothing until it fires (:func:`_each`): a record whose enrichment, sanitising or roll-up
fails is counted, and the rest of its batch goes on.

The caller's thread only appends, wakes and, once per batch, checks that the threads run;
each of these survives an exception raised there by a signal handler (see :mod:`.intake`):
a thread start it interrupted is noticed and redone on a later record, and a thread
replaced that way ends on its own (:meth:`Pipeline.start`).

At interpreter exit on Python 3.12+ no thread may be started: if the threads never ran,
:meth:`Pipeline.drain_inline` processes the queue on the exiting thread. After ``os.fork()``
:meth:`Pipeline.reset_after_fork` gives the child fresh locks, queues, threads and counters;
whatever the parent had queued stays the parent's to deliver.
"""

from .accounting import Drop
from .core import Pipeline

__all__ = ["Drop", "Pipeline"]
