"""The static name graph from each test to the project symbols it can reach: the index as a whole."""

from __future__ import annotations

from collections import deque

from tracefix.index.discovery import TestDiscovery
from tracefix.index.files import Node
from tracefix.parsing.symbols import MODULE


class ProjectIndex(TestDiscovery):
    def graph(self) -> dict[Node, set[Node]]:
        if self._graph is None:
            self._graph = self._build_graph()
            reverse: dict[Node, set[Node]] = {}
            for src, dsts in self._graph.items():
                for dst in dsts:
                    reverse.setdefault(dst, set()).add(src)
            self._reverse = reverse
        return self._graph

    def reverse(self) -> dict[Node, set[Node]]:
        self.graph()
        return self._reverse

    def _build_graph(self) -> dict[Node, set[Node]]:
        graph: dict[Node, set[Node]] = {}
        tops = {
            p: {s.qualname for s in e.facts.symbols if s.kind != "module" and "." not in s.qualname}
            for p, e in self.files.items()
        }
        for path, entry in self.files.items():
            f = entry.facts
            bound, stars = self.bindings(path, f)
            module_node = (path, MODULE)
            imported_files = {n[0] for nodes in bound.values() for n in nodes} | stars
            for s in f.symbols:
                node = (path, s.qualname)
                edges = graph.setdefault(node, set())
                if s.kind != "module":
                    edges.add(module_node)  # using a symbol imports its module
                    parent = s.qualname.rpartition(".")[0]
                    if parent:
                        edges.add((path, parent))
                if s.kind == "class":
                    edges.update(
                        (path, m.qualname)
                        for m in f.symbols
                        if m.qualname.startswith(s.qualname + ".") and m.kind == "method"
                    )
                for name in f.uses.get(s.qualname, ()):
                    if name in tops[path] and name != s.qualname:
                        edges.add((path, name))
                    for target in bound.get(name, ()):
                        edges.add(target)
                        if target[1] == MODULE:
                            # `mod.attr`: any top-level name of that module used here
                            edges.update((target[0], n) for n in f.uses[s.qualname] & tops[target[0]])
                    for star in stars:
                        if name in tops[star]:
                            edges.add((star, name))
            # importing a module runs the modules it imports
            graph[module_node].update((p, MODULE) for p in imported_files if p != path)
        return graph

    def tests_reaching(self, targets: set[Node]) -> dict[str, list[Node]]:
        """nodeid → a path of nodes from the test to one of `targets` (for explanations)."""
        reverse = self.reverse()
        parent: dict[Node, Node | None] = dict.fromkeys(targets)
        queue = deque(targets)
        while queue:
            node = queue.popleft()
            for src in reverse.get(node, ()):
                if src not in parent:
                    parent[src] = node
                    queue.append(src)
        found: dict[str, list[Node]] = {}
        for test in self.tests():
            # an inherited test runs the mixin's method on its own class (its setUp, its fixtures)
            owners = [test.node] + ([(test.path, test.qualname.rpartition(".")[0])] if test.source else [])
            node = next((n for n in owners if n in parent), None)
            if node is not None:
                chain = [node]
                while parent[chain[-1]] is not None:
                    chain.append(parent[chain[-1]])
                found[test.nodeid] = chain
        return found
