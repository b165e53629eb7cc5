"""The package's shape (docs/architecture.md): layers as folders, imports pointing down only,
ROS imported only by the ROS layer and the tools, no import cycle, files and functions short."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "refinenet_ros"
# Lower numbers are lower layers; a module may import its own layer or lower ones. training
# and ros share a level but must not import each other.
LAYERS = {"choices": 0, "models": 1, "engine": 2, "training": 3, "ros": 3, "tools": 4}
# The engine's rooms, lowest first: a module imports only its own room or lower ones. The facade
# (engine/segmenter.py) and the modules beside it (the measuring child, sample frames) are on top.
ENGINE_ROOMS = ("hardware", "model", "backends", "planning", "processing", None)
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


def engine_room(module):
    """The index in ENGINE_ROOMS of an engine module (None: not in the engine)."""
    parts = module.split(".")
    if parts[:2] != ["refinenet_ros", "engine"]:
        return None
    room = parts[2] if len(parts) > 3 or (len(parts) == 3 and parts[2] in ENGINE_ROOMS) else None
    return ENGINE_ROOMS.index(room)


def test_engine_rooms_import_only_rooms_below_them():
    rooms = {path.name for path in (PACKAGE / "engine").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert rooms == set(ENGINE_ROOMS) - {None}, f"engine rooms {sorted(rooms)}: add a new one to ENGINE_ROOMS"
    problems = []
    for name, path, is_package in modules():
        own = engine_room(name)
        if own is None or name == "refinenet_ros.engine":
            continue
        assert (path.parent / "__init__.py").read_text().startswith('"""'), f"{path.parent} has no docstring"
        for target in imports(name, path, is_package):
            target_room = engine_room(target)
            if target_room is not None and target_room > own and target != "refinenet_ros.engine":
                problems.append(f"{name} ({ENGINE_ROOMS[own] or 'facade'}) imports {target}, a higher room")
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
    from refinenet_ros.engine.model import shipped as paths
    monkeypatch.setenv("AMENT_PREFIX_PATH", "")
    monkeypatch.setattr(paths.sys, "prefix", "/nonexistent")
    assert paths.share_dir() == PACKAGE.parent
    assert (paths.config_file("params.yaml")).is_file()


def defined_names(path):
    """{module-level name} and {class name: {member names}} defined in ``path``."""
    tree = ast.parse(path.read_text())
    top, classes = set(), {}

    def targets(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return {node.name}
        if isinstance(node, ast.Assign):
            return {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return {node.target.id}
        return set()

    for node in tree.body:
        top |= targets(node)
        if isinstance(node, ast.ClassDef):
            classes[node.name] = set().union(*(targets(member) for member in node.body))
    return top, classes


def test_architecture_doc_cites_only_modules_and_names_that_exist():
    """Every `file.py` in docs/architecture.md exists; a `file.py` `Name` pair names a
    definition of that file; a `Class.member` names a member of a class of the package."""
    import re
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    files = {p.name for p in PACKAGE.rglob("*.py")} | {p.name for p in (PACKAGE.parent / "test").glob("*.py")}
    definitions = {path: defined_names(path) for path in PACKAGE.rglob("*.py")}
    members = {}
    for _, classes in definitions.values():
        for name, names in classes.items():
            members.setdefault(name, set()).update(names)
    problems = []
    for token in set(re.findall(r"`([\w/]+\.py)`", doc)):
        if "/" in token and not (PACKAGE / token).is_file() and not (PACKAGE.parent / token).is_file():
            problems.append(f"no file {token}")
        elif "/" not in token and token not in files:
            problems.append(f"no file named {token}")
    for token, name in re.findall(r"`([\w/]+\.py)`\s+`([A-Za-z_][\w.]*)`", doc):
        path = PACKAGE / token
        if not path.is_file():
            continue  # reported above
        top, classes = definitions[path]
        head, _, member = name.partition(".")
        if head not in top or (member and member not in classes.get(head, ())):
            problems.append(f"{token} defines no {name}")
    for cls, member in re.findall(r"`([A-Z]\w*)\.([A-Za-z_]\w*)`", doc):
        if member not in members.get(cls, ()):
            problems.append(f"no {cls}.{member}")
    assert not problems, problems
