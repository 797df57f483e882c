"""``python -m services.runtime.gateway``: the endpoint picker as a child process (of PickerServer)."""

from services.runtime.gateway.picker import main

if __name__ == "__main__":
    main()
