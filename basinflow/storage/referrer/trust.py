"""Which basin locations a referrer may make us open, and with which storage options.

A referrer is data, and data from elsewhere is untrusted: its basin paths and URLs are
checked *before* any file is opened or any request is sent.

Rules
-----
* A **file** location is allowed when its real path (``..`` collapsed, symlinks
  resolved) lies in a trusted root: a root given by the caller, a repository's raw and
  output roots (pass the :class:`~basinflow.catalog.repository.Repository`), or, by
  default, the directory holding the referrer itself and everything below it (never its
  parents: a referrer in ``/tmp`` may point at ``/tmp/x/raw.h5``, not at
  ``/tmp/../etc/passwd``). ``trust_referrer_dir=False`` removes that last root.
  The path checked is the one that will be opened: a ``file://`` URL is read literally
  (as fsspec and h5py do) and must be absolute, and, if percent-decoding changes it, its
  decoded form must be inside a trusted root too.
* A **remote** location (``http(s)://``, ``s3://``) is allowed when it lies under a
  trusted root URL (prefix match on whole path segments, no ``..`` segments) or its
  host is a trusted host (``"http://host:port"``; for S3 the bucket, ``"s3://bucket"``).
* **Credentials** are scoped to roots: a location gets the storage options of the
  longest trusted root containing it (a repository's own options for its root, the
  caller's ``storage_options`` for the referrer's own location), ``host_options[host]``
  for a trusted host, and nothing otherwise. Options are never written into a referrer.
  Credentials the options do not name come from the environment (botocore's chain) and
  are meant for AWS or for the endpoint a repository's configuration names: an S3
  endpoint trusted any other way is asked anonymously unless its options name
  credentials (:func:`~basinflow.storage.fs.scoped_s3_options`).
* **Redirects** are not followed by the requests for a basin: an HTTP(S) location's
  options turn them off (``allow_redirects=False``), so a 3xx answer is an error
  (:class:`~basinflow.errors.RedirectRefusedError`) naming its target. Resolving a basin
  follows a redirect only after checking its target here, like any other location, and
  with the target's own options (credentials never follow a redirect to another host).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from basinflow.errors import UntrustedBasinError
from basinflow.storage import fs


def normalize(url: str) -> str:
    """A canonical form: local paths absolute and real (symlinks resolved) as plain
    paths; remote URLs with the path normalised. ``..`` segments in a remote URL are
    refused rather than interpreted.

    A ``file://`` URL is taken literally, as :func:`basinflow.storage.fs.local_path`,
    fsspec and h5py open it: ``%2e%2e`` is a directory of that name, not ``..``
    (:meth:`Trust.check` also refuses a location whose percent-decoded form would
    leave the trusted roots)."""
    path = fs.local_path(url)
    try:
        if path is not None:
            return os.path.realpath(os.path.expanduser(path))
        parts = urlsplit(url)
    except ValueError as exc:  # an embedded NUL, an unparsable netloc
        why = "a NUL character" if "\0" in url else "not a valid URL"
        raise UntrustedBasinError(
            f"{url!r} is not a valid location ({exc}); it was not opened", reason=why
        ) from exc
    segments = unquote(parts.path).split("/")
    if ".." in segments or "." in segments:
        raise UntrustedBasinError(
            f"{url!r}: '..' or '.' segments are not allowed in basin URLs; it was not opened. "
            "Name the location without them",
            reason="a '..' or '.' segment",
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{posixpath.normpath(parts.path or '/')}"


def _under(target: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return target == root or target.startswith(root if root == "/" else root + "/")


@dataclass(frozen=True)
class TrustedRoot:
    root: str  # normalised
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    why: str = "caller"
    #: the options come from a repository's configuration, so credentials from the
    #: environment are meant for its endpoint
    paired: bool = False


@dataclass(frozen=True)
class Trust:
    """Trusted roots and hosts, and the storage options each of them may use."""

    roots: tuple[TrustedRoot, ...] = ()
    hosts: tuple[str, ...] = ()
    host_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        trusted: Iterable[Any] = (),
        trusted_hosts: Iterable[str] = (),
        *,
        referrer_url: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        host_options: Mapping[str, Mapping[str, Any]] | None = None,
        trust_referrer_dir: bool = True,
    ) -> Trust:
        roots: list[TrustedRoot] = []
        hosts = [_host_key(h) for h in trusted_hosts]
        if isinstance(trusted, str) or hasattr(trusted, "trusted_roots"):
            trusted = [trusted]
        for item in trusted:
            if isinstance(item, Trust):
                roots.extend(item.roots)
                hosts.extend(item.hosts)
            elif hasattr(item, "trusted_roots"):  # a Repository
                opts = dict(getattr(item, "storage_options", {}) or {})
                for r in item.trusted_roots:
                    roots.append(TrustedRoot(_root(r), opts, f"repository {item.name!r}", True))
                hosts.extend(_host_key(h) for h in getattr(item, "trusted_hosts", ()))
            elif isinstance(item, tuple) and len(item) == 2:
                roots.append(TrustedRoot(_root(item[0]), dict(item[1] or {})))
            else:
                roots.append(TrustedRoot(_root(str(item))))
        if referrer_url is not None and trust_referrer_dir:
            own = normalize(referrer_url)
            base = (
                os.path.dirname(own)
                if fs.local_path(referrer_url) is not None
                else own.rsplit("/", 1)[0]
            )
            roots.append(TrustedRoot(base, dict(storage_options or {}), "referrer directory", True))
        return cls(tuple(roots), tuple(dict.fromkeys(hosts)), dict(host_options or {}))

    def check(self, url: str, *, what: str = "basin") -> dict[str, Any]:
        """Storage options for ``url`` if it may be opened; else :class:`UntrustedBasinError`."""
        path = fs.local_path(url)
        local = path is not None
        if local and not os.path.isabs(path):
            # "file://x.h5", "~/x.h5": h5py would open it relative to the working directory
            raise UntrustedBasinError(
                f"{what} location {url!r} is a relative file URL (it would resolve against the "
                "working directory); it was not opened. Basin paths are relative to the "
                "referrer's directory: use such a path, or an absolute one",
                reason="a relative file URL",
            )
        target = normalize(url)
        best = self._best_root(target, local)
        decoded = unquote(path) if local and "://" in url else path
        # percent-encoding: it must be safe however a layer below reads it, as is or decoded
        if best is not None and decoded != path and not self._best_root(normalize(decoded), True):
            raise UntrustedBasinError(
                f"{what} location {url!r} is inside a trusted root as written, but its "
                f"percent-decoded form {decoded!r} is not; it was not opened. Write the path "
                "without percent-encoding",
                reason="outside the trusted roots once percent-decoded",
            )
        if best is not None:
            return _no_redirects(url, best.storage_options, paired=best.paired)
        if not local and _host_key(url) in self.hosts:
            return _no_redirects(url, self.host_options.get(_host_key(url), {}), paired=False)
        roots = ", ".join(r.root for r in self.roots) or "none"
        hosts = ", ".join(self.hosts) or "none"
        raise UntrustedBasinError(
            f"{what} location {url!r} is outside the trusted roots ({roots}) and hosts "
            f"({hosts}); it was not opened. If you trust it, pass trusted=[...] or "
            "trusted_hosts=[...] to open_referrer",
            reason=self._why_not(url, local),
        )

    def _why_not(self, url: str, local: bool) -> str:
        if local:
            return "outside the trusted roots"
        host = _host_key(url)
        if any(fs.local_path(r.root) is None and _host_key(r.root) == host for r in self.roots):
            return "outside the trusted roots"
        return f"unknown host {host}"

    def _best_root(self, target: str, local: bool) -> TrustedRoot | None:
        """The longest trusted root containing the normalised ``target``."""
        best: TrustedRoot | None = None
        for r in self.roots:
            if (fs.local_path(r.root) is not None) != local:
                continue
            if _under(target, r.root) and (best is None or len(r.root) > len(best.root)):
                best = r
        return best

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
        except UntrustedBasinError:
            return False
        return True


def _no_redirects(url: str, options: Mapping[str, Any], *, paired: bool) -> dict[str, Any]:
    """``options`` for a request to ``url``; over HTTP(S) with redirects turned off (a 3xx
    answer raises :class:`~basinflow.errors.RedirectRefusedError` naming its target, which
    :func:`~basinflow.storage.referrer.load.resolve` checks before it follows it); on S3,
    without the environment's credentials unless the options were ``paired`` with them
    (a repository's own)."""
    out = dict(options)
    if fs.scheme_of(url) == "s3" and not paired:
        out = fs.scoped_s3_options(out)
    if fs.scheme_of(url) in ("http", "https"):
        out["allow_redirects"] = False
    return out


def _root(text: str) -> str:
    # a template root such as "file:///data/nexus/" or "s3://raw/samples/"
    return normalize(text.rstrip("/") or "/")


def _host_key(url: str) -> str:
    if "://" not in url:
        return url.lower().rstrip("/")
    p = urlsplit(url)
    return f"{p.scheme.lower()}://{p.netloc.lower()}"


__all__ = ["Trust", "TrustedRoot", "normalize"]
