from _typeshed import Incomplete

logger: Incomplete

def refresh_log_level() -> None:
    '''Tell the core the current effective level of the ``edgemodule`` logger.

    Called whenever a client is created; call it yourself after changing the level of a
    running process (e.g. ``logging.getLogger("edgemodule").setLevel(logging.DEBUG)``).
    '''
