"""SIGINT/SIGTERM for the package's processes: a signal only asks the main loop to stop (rclpy's
default handlers would shut the context down under running threads), and once the process has
cleaned up, further signals are ignored: `ros2 launch` forwards SIGINT to a process that got the
group's already, and one arriving while the interpreter exits would kill it by the signal."""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_event():
    """An event that SIGINT and SIGTERM set (install before anything slow is imported)."""
    stop = threading.Event()
    for signum in SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    return stop


def ignore_signals():
    """After clean-up: the process is exiting, so late signals must not decide its exit code."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
