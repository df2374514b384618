"""Names checked before anything slow starts: the CLI's first step.

A typo in a recipe, repository, proposal or scan name, or in the fixed directory part of a
template, used to surface only after Dask and Prefect had started and every scan had
failed (a minute and dozens of lines). These checks need only the config, the recipe
registry and the catalog listing (metadata, never frames), so they end in well under a
second with one line that says what is known and what was probably meant.

Nothing here imports Prefect or Dask's distributed scheduler.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from basinflow.errors import (
    ConfigError,
    NotFound,
    ProposalNotFound,
    ScanNotFound,
    UnknownRecipeError,
)
from basinflow.keys import validate_key

if TYPE_CHECKING:
    from basinflow.catalog.repository import Proposal, Repository
    from basinflow.config import Config

#: At most this many known names are listed in a message (the rest are counted).
SHOWN = 8


class TemplateRootNotFound(NotFound, FileNotFoundError):
    """The fixed directory a template starts from does not exist."""


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known names (typos and case), else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    folded = {k.lower(): k for k in known}
    if not close and name.lower() in folded:
        close = [folded[name.lower()]]
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def _plural(what: str) -> str:
    return what[:-1] + "ies" if what.endswith("y") else what + "s"


def _known(what: str, known: Sequence[str]) -> str:
    what = _plural(what)
    if not known:
        return f"no {what} are known"
    shown = ", ".join(known[:SHOWN])
    more = f" and {len(known) - SHOWN} more" if len(known) > SHOWN else ""
    return f"known {what}: {shown}{more}"


def check_name(name: str, known: Sequence[str], what: str, where: str, error: type) -> None:
    """Raise ``error`` naming ``name``, the closest known names and the known ones."""
    if name in known:
        return
    noun = "key" if what in ("proposal", "scan") else "name"
    raise error(
        f"no {what} {name!r} in {where}{did_you_mean(name, known)} ({_known(what, known)}); "
        f"check the {noun}"
    )


def recipe_names() -> list[str]:
    """Registered recipe names without importing any recipe (they pull in Dask and numba):
    the entry points of ``basinflow.recipes``, plus any registered in this process."""
    import importlib.metadata
    import sys

    names = {ep.name for ep in importlib.metadata.entry_points(group="basinflow.recipes")}
    registry = sys.modules.get("basinflow.recipes.registry")
    if registry is not None:
        names |= set(registry.registry)
    return sorted(names)


def check_recipe(name: str) -> None:
    check_name(name, recipe_names(), "recipe", "the registered recipes", UnknownRecipeError)


def check_template_root(repo: Repository) -> None:
    """The directory a template's fixed part names must exist (a typo there lists nothing)."""
    from basinflow.storage import fs

    root = repo.template.root
    if not root or root.endswith("://"):
        return
    local = fs.local_path(root)
    if local is None:
        return  # a remote prefix need not exist as an object; listing says what it finds
    import os

    if not os.path.isdir(local):
        parent = os.path.dirname(local.rstrip("/"))
        near = ""
        if os.path.isdir(parent):
            near = did_you_mean(os.path.basename(local.rstrip("/")), sorted(os.listdir(parent)))
        raise TemplateRootNotFound(
            f"the template {repo.url!r} starts in {local!r}, which does not exist; check "
            f"the directory part of the template{near}"
        )


def repository(config: Config, name: str) -> Repository:
    """The named repository of ``config``, its template root checked."""
    from basinflow.config import open_repository

    check_name(name, sorted(config.repositories), "repository", "the config", ConfigError)
    repo = open_repository(config, name)
    check_template_root(repo)
    return repo


def proposal(repo: Repository, key: str) -> Proposal:
    validate_key(key, "proposal")  # a hostile key is refused before it is compared
    check_name(key, repo.keys(), "proposal", f"repository {repo.name!r}", ProposalNotFound)
    return repo[key]


def scans(prop: Proposal, keys: Iterable[str]) -> None:
    known = prop.keys()
    for key in keys:
        validate_key(key, "scan")
        check_name(key, known, "scan", f"proposal {prop.key!r}", ScanNotFound)


def cook_arguments(
    config: Config, repository_name: str, proposal_key: str, scan_keys: Iterable[str], recipe: str
) -> Repository:
    """Everything ``basinflow cook`` is asked for exists (recipe first: it needs no I/O)."""
    check_recipe(recipe)
    repo = repository(config, repository_name)
    scans(proposal(repo, proposal_key), scan_keys)
    return repo


__all__ = [
    "TemplateRootNotFound",
    "check_name",
    "check_recipe",
    "check_template_root",
    "cook_arguments",
    "did_you_mean",
    "proposal",
    "repository",
    "scans",
]
