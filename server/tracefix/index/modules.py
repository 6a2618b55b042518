"""Module names of the project's files, and what each import statement binds."""

from __future__ import annotations

from pathlib import PurePosixPath

from tracefix.index.files import IndexFiles, Node
from tracefix.parsing.symbols import MODULE, Facts, Import


class ModuleResolution(IndexFiles):
    def source_roots(self) -> list[str]:
        roots = [""]
        if any(p.startswith("src/") for p in self.files):
            roots.append("src")
        roots.extend(p.strip("/") for p in self.config.pythonpath if p not in (".", ""))
        # pytest's default rootdir-relative import mode puts each test's first package-less
        # directory on sys.path
        for path in self.files:
            if self.is_test_file(path):
                roots.append(self._basedir(path))
        return list(dict.fromkeys(roots))

    def _basedir(self, path: str) -> str:
        parent = PurePosixPath(path).parent
        while str(parent) != "." and f"{parent}/__init__.py" in self.files:
            parent = parent.parent
        return "" if str(parent) == "." else str(parent)

    def modules(self) -> dict[str, str]:
        """Dotted module name → file path."""
        if self._modules is None:
            names: dict[str, str] = {}
            for root in self.source_roots():
                prefix = root + "/" if root else ""
                for path in self.files:
                    if not path.startswith(prefix):
                        continue
                    parts = list(PurePosixPath(path[len(prefix) :]).with_suffix("").parts)
                    if parts[-1] == "__init__":
                        parts.pop()
                    if parts and all(p.isidentifier() for p in parts):
                        names.setdefault(".".join(parts), path)
            self._modules = names
        return self._modules

    def module_name(self, path: str) -> str | None:
        return next((name for name, p in self.modules().items() if p == path), None)

    def _resolve_module(self, importer: str, imp: Import) -> str | None:
        if imp.level:
            base = PurePosixPath(importer).parent
            for _ in range(imp.level - 1):
                base = base.parent
            package = self.module_name(f"{base}/__init__.py") if str(base) != "." else None
            if package is None:
                name = ".".join(p for p in base.parts if p != ".")
            else:
                name = package
            return ".".join(p for p in (name, imp.module) if p)
        return imp.module

    def bindings(self, path: str, f: Facts) -> tuple[dict[str, list[Node]], set[str]]:
        """Names an import binds in `path` → the nodes they stand for; plus star-imported files."""
        modules = self.modules()
        bound: dict[str, list[Node]] = {}
        stars: set[str] = set()
        for imp in f.imports:
            module = self._resolve_module(path, imp)
            if not imp.names:
                # `import a.b.c` binds `a` and imports a, a.b, a.b.c; `import a.b as c` binds c
                parts = module.split(".")
                target_name = imp.alias or parts[0]
                chain = [".".join(parts[: i + 1]) for i in range(len(parts))]
                targets = [(modules[m], MODULE) for m in chain if m in modules]
                if targets:
                    bound.setdefault(target_name, []).extend(targets)
                continue
            for name in imp.names:
                if name == "*":
                    if module in modules:
                        stars.add(modules[module])
                    continue
                sub = f"{module}.{name}" if module else name
                if sub in modules:
                    bound.setdefault(name, []).append((modules[sub], MODULE))
                elif module in modules:
                    bound.setdefault(name, []).append((modules[module], name))
        return bound, stars
