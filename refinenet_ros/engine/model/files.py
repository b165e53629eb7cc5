"""Reading a user's files (weights, model descriptions, label maps, list parameters): what is wrong
with a path that is no file to read, YAML's safe loader (JSON is YAML too), and one error that names
the file and what is wrong with it."""
import os
import stat

import yaml


def read_yaml(path, what, error=ValueError):
    """The YAML (or JSON) document in ``path``; ``error`` says "cannot read <what> <path>: ..."
    or "<what> <path> is not valid YAML/JSON: ..." (the first 300 characters of the reason)."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML/JSON: {' '.join(str(exc).split())[:300]}") from None


def file_problem(path, what="file"):
    """Why ``path`` is no ``what`` to read - missing, a directory, a device or pipe, empty - or None."""
    try:
        info = os.stat(os.path.expanduser(os.fspath(path)))
    except FileNotFoundError:
        return f"{what} {path} does not exist"
    except OSError as exc:
        return f"cannot read {what} {path}: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return f"{what} {path} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{what} {path} is not a regular file (a device, pipe or socket)"
    if info.st_size == 0:
        return f"{what} {path} is empty (0 bytes: an interrupted copy or download?)"
    return None
