"""Django example: views call SteerLLMClient; LLM metrics are tagged with the route.

python examples/django_project/manage.py runserver 127.0.0.1:8001
# then POST /chat, and (as a staff user, or with STEER_DEBUG_ENDPOINTS=1) GET
# /_steer/debug and /_steer/debug/dashboard
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
