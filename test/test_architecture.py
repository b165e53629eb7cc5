"""The package's shape (docs/architecture.md): layers as folders, imports pointing down only,
ROS imported only by the ROS layer and the tools, no import cycle, files and functions short."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "refinenet_ros"
# Lower numbers are lower layers; a module may import its own layer or lower ones. training
# and ros share a level but must not import each other.
LAYERS = {"choices": 0, "models": 1, "engine": 2, "training": 3, "ros": 3, "tools": 4}
ROS_PACKAGES = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rcl_interfaces", "vision_msgs",
                "launch", "launch_ros", "ament_index_python", "builtin_interfaces", "rosidl_runtime_py"}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, path.name == "__init__.py"


def imports(name, path, is_package):
    """Absolute names of everything ``path`` imports (function-level imports included)."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.module
                continue
            anchor = base[:len(base) - node.level + 1]
            module = ".".join(anchor + ([node.module] if node.module else []))
            if node.module:
                yield module
            else:  # from . import a, b: each is a module
                yield from (f"{module}.{alias.name}" for alias in node.names)


def layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "refinenet_ros" else None


def test_imports_point_down_and_ros_stays_in_its_layer():
    problems = []
    for name, path, is_package in modules():
        if name == "refinenet_ros":
            continue  # the facade: `from refinenet_ros import Segmenter`, imported lazily
        own = layer(name)
        assert own is not None, f"{name} is in no layer folder: {sorted(LAYERS)}"
        for target in imports(name, path, is_package):
            top = target.split(".")[0]
            if top in ROS_PACKAGES and own not in (LAYERS["ros"], LAYERS["tools"]):
                problems.append(f"{name} imports {target}: ROS belongs to refinenet_ros.ros and tools")
            target_layer = layer(target)
            if target_layer is None:
                continue
            crossing = own == target_layer and name.split(".")[1] != target.split(".")[1]
            if target_layer > own or crossing:
                problems.append(f"{name} imports {target}, a higher or sibling layer")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    graph = {}
    known = {name for name, _, _ in modules()}
    for name, path, is_package in modules():
        targets = set()
        for target in imports(name, path, is_package):
            while target and target not in known:  # "pkg.module.function" -> "pkg.module"
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):  # own parent package
                targets.add(target)
        graph[name] = targets
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_files_and_functions_are_short():
    long = []
    for name, path, _ in modules():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, "\n".join(long)


def test_share_folder_found_from_a_source_checkout(monkeypatch):
    """Not installed (no package on AMENT_PREFIX_PATH or sys.prefix): the repository root."""
    from refinenet_ros.engine import paths
    monkeypatch.setenv("AMENT_PREFIX_PATH", "")
    monkeypatch.setattr(paths.sys, "prefix", "/nonexistent")
    assert paths.share_dir() == PACKAGE.parent
    assert (paths.config_file("params.yaml")).is_file()
