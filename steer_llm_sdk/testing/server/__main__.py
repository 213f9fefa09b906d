"""``python -m steer_llm_sdk.testing.server [--port 8000] ...``: serve until interrupted."""

from .core import main

if __name__ == "__main__":
    main()
