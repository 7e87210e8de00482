"""Early cutoff: a step is keyed by what its dependencies produced (the digests of their
cached outputs), not by their keys. A change that leaves a dependency's outputs byte for byte
the same reruns that dependency and nothing after it; one that changes them reruns the
dependents. A dependency with no declared outputs, or not cached, still passes its key on."""

from __future__ import annotations

import json

import pytest

from tests.helpers import Workspace


@pytest.fixture
def chain(ws: Workspace) -> Workspace:
    """lib (strips comment lines from its source) <- app <- site, each writing one output."""
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["lib", "app", "site"]\n',
            "lib/once.toml": (
                "[rule.build]\n"
                f'cmd = "{ws.marker("lib")} && mkdir -p out '
                "&& grep -v '^#' src.txt > out/lib.txt\"\n"
                'inputs = ["src.txt"]\noutputs = ["out/"]\n'
            ),
            "lib/src.txt": "# a comment\nvalue 1\n",
            "app/once.toml": (
                '[package]\ndeps = ["//lib"]\n\n[rule.build]\n'
                f'cmd = "{ws.marker("app")} && mkdir -p out && cp ../lib/out/lib.txt out/app.txt"\n'
                'deps = ["^build"]\noutputs = ["out/app.txt"]\n'
            ),
            "site/once.toml": (
                '[package]\ndeps = ["//app"]\n\n[rule.build]\n'
                f'cmd = "{ws.marker("site")} && mkdir -p out '
                '&& cp ../app/out/app.txt out/site.txt"\n'
                'deps = ["^build"]\noutputs = ["out/site.txt"]\n'
            ),
        }
    )
    assert ws.once("run", "build").code == 0
    assert sorted(ws.ran()) == ["app", "lib", "site"]
    return ws


def test_a_change_that_leaves_the_output_the_same_stops_at_the_dependency(chain: Workspace) -> None:
    (chain.root / "lib/src.txt").write_text("# another comment\nvalue 1\n")
    done = chain.once("run", "build")
    assert done.code == 0, done.err
    assert chain.ran() == ["lib"]
    assert "//app:build" in done.out
    assert "//site:build" in done.out
    # And the next run is a no-op (the fast path agrees with the run that cut off).
    assert chain.once("run", "build").code == 0
    assert chain.ran() == []


def test_a_change_to_the_output_reruns_every_dependent(chain: Workspace) -> None:
    (chain.root / "lib/src.txt").write_text("# a comment\nvalue 2\n")
    assert chain.once("run", "build").code == 0
    assert chain.ran() == ["lib", "app", "site"]
    assert (chain.root / "site/out/site.txt").read_text() == "value 2\n"
    # Back to the first source: every step is restored from its first entry.
    (chain.root / "lib/src.txt").write_text("# a comment\nvalue 1\n")
    assert chain.once("run", "build").code == 0
    assert chain.ran() == []
    assert (chain.root / "site/out/site.txt").read_text() == "value 1\n"


def test_why_names_the_dependency_output_that_changed(chain: Workspace) -> None:
    (chain.root / "lib/src.txt").write_text("# a comment\nvalue 2\n")
    assert chain.once("run", "//lib:build").code == 0
    done = chain.once("why", "//app:build")
    assert done.code == 0, done.err
    assert "//app:build: key " in done.out
    assert "dependency changed: //lib:build" in done.out
    assert "output of //lib:build changed: lib/out/lib.txt (" in done.out
    # The library ran since: its own key is the one of its last run.
    assert "//lib:build: unchanged since its last run" in done.out


def test_a_dependency_stored_again_with_other_outputs_rebuilds_its_dependents(
    chain: Workspace,
) -> None:
    """The same key, stored anew with other outputs (a build that is not reproducible, run
    with --force): keyed by the library's key, the app was a hit built from the old output."""
    lib = chain.root / "lib/once.toml"
    lib.write_text(
        lib.read_text().replace("> out/lib.txt", "> out/lib.txt; date +%N >> out/lib.txt")
    )
    assert chain.once("run", "build").code == 0
    chain.ran()
    assert chain.once("run", "//lib:build", "--force").code == 0
    assert chain.ran() == ["lib"]
    done = chain.once("run", "build")
    assert done.code == 0, done.err
    assert chain.ran() == ["app", "site"]
    assert (chain.root / "site/out/site.txt").read_text() == (
        chain.root / "lib/out/lib.txt"
    ).read_text()


def test_a_dependency_without_outputs_passes_its_key_on(ws: Workspace) -> None:
    """Nothing of it can be compared: anything that changes its key reruns its dependents."""
    ws.write(
        {
            "once.toml": (
                "[rule.gen]\n"
                f'cmd = "{ws.marker("gen")} && cp gen.txt ../generated.txt"\n'
                'inputs = ["gen.txt"]\n\n'
                "[rule.use]\n"
                f'cmd = "{ws.marker("use")}"\ninputs = ["use.txt"]\ndeps = ["gen"]\n'
            ),
            "gen.txt": "1\n",
            "use.txt": "u\n",
        }
    )
    assert ws.once("run", "use").code == 0
    assert ws.ran() == ["gen", "use"]
    (ws.root / "gen.txt").write_text("2\n")
    assert ws.once("run", "use").code == 0
    assert ws.ran() == ["gen", "use"]


def test_an_uncached_dependency_passes_its_key_on(ws: Workspace) -> None:
    ws.write(
        {
            "once.toml": (
                "[rule.gen]\n"
                f'cmd = "{ws.marker("gen")} && mkdir -p out && cp gen.txt out/"\n'
                'inputs = ["gen.txt"]\noutputs = ["out/"]\ncache = false\n\n'
                "[rule.use]\n"
                f'cmd = "{ws.marker("use")} && cat out/gen.txt"\ninputs = ["use.txt"]\n'
                'deps = ["gen"]\n'
            ),
            "gen.txt": "1\n",
            "use.txt": "u\n",
        }
    )
    assert ws.once("run", "use").code == 0
    assert ws.ran() == ["gen", "use"]
    assert ws.once("run", "use").code == 0
    assert ws.ran() == ["gen"]  # gen is never cached; its key is the same, so use is
    (ws.root / "gen.txt").write_text("2\n")
    assert ws.once("run", "use").code == 0
    assert ws.ran() == ["gen", "use"]


def test_dry_run_shows_the_dependency_results_in_the_key(chain: Workspace) -> None:
    done = chain.once("run", "build", "--dry-run", "--json")
    assert done.code == 0, done.err
    actions = {a["label"]: a for a in json.loads(done.out)["actions"]}
    app = actions["//app:build"]
    assert app["cached"]
    ((label, result),) = app["spec"]["deps"]
    assert label == "//lib:build"
    assert result.startswith("outputs ")
    assert [path for path, _ in app["spec"]["dep_outputs"]["//lib:build"]] == [
        "lib/out",
        "lib/out/lib.txt",
    ]
    (chain.root / "lib/src.txt").write_text("# a comment\nvalue 2\n")
    status = chain.once("status")
    assert "//app:build: would run after //lib:build: its key holds what that produces" in (
        status.out
    )


def test_why_names_the_output_of_a_dependency_still_being_stored(ws: Workspace) -> None:
    """A step's spec is written as soon as it finishes, while its dependency's entry may still
    be on its way into the store (64 MiB to flush): the spec lists that dependency's outputs
    from the run's own save, so `once why` can name the one that changed later."""
    ws.write(
        {
            "once.toml": '[workspace]\nmembers = ["lib", "app"]\n',
            "lib/once.toml": (
                "[rule.build]\n"
                'cmd = "mkdir -p out && head -c 67108864 /dev/urandom > out/big.bin '
                '&& cp src.txt out/lib.txt"\n'
                'inputs = ["src.txt"]\noutputs = ["out/"]\n'
            ),
            "lib/src.txt": "value 1\n",
            "app/once.toml": (
                '[package]\ndeps = ["//lib"]\n\n[rule.build]\n'
                'cmd = "cp ../lib/out/lib.txt app.txt"\n'
                'deps = ["^build"]\noutputs = ["app.txt"]\n'
            ),
        }
    )
    assert ws.once("run", "build").code == 0
    (ws.root / "lib/src.txt").write_text("value 2\n")
    assert ws.once("run", "//lib:build").code == 0
    done = ws.once("why", "//app:build")
    assert done.code == 0, done.err
    assert "output of //lib:build changed: lib/out/" in done.out
