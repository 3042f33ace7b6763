"""No module of engine/ or adapters/ imports, however indirectly, a module that imports it back (issue 35:
"no cycles"); imports made only for type checking do not count. The layers contract in pyproject.toml holds
the floors' order; this holds every pair of modules, within a floor too."""

from __future__ import annotations

import grimp


def test_no_two_modules_import_each_other() -> None:
    graph = grimp.build_graph("engine", "adapters", exclude_type_checking_imports=True)
    assert len(graph.modules) > 100  # the graph holds the tree (a graph of nothing passes nothing)
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if graph.find_shortest_chain(importer=imported, imported=module)})
    assert cycles == [], f"modules that import each other (directly or through others): {cycles}"
