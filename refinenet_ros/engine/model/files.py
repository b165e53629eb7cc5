"""Reading a user's files (model descriptions, label maps, list parameters): YAML's safe loader
(JSON is YAML too), and one error that names the file and what is wrong with it."""
import os

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
