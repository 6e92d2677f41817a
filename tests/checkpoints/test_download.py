"""Downloads against a local HTTP server: progress, checksums, atomicity, resume, errors, registry names."""
from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import stylegan_unmask.checkpoints as checkpoints
from stylegan_unmask.checkpoints import download, registry
from stylegan_unmask.checkpoints.download import fetch, url_filename
from stylegan_unmask.checkpoints.registry import CheckpointEntry
from stylegan_unmask.errors import CheckpointError, DownloadError

PAYLOAD = np.random.RandomState(1).bytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files; honours 'Range: bytes=N-' when server.ranges is True."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if srv.ranges and match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        limit = srv.cut_after if srv.cut_after is not None else len(body)
        sent = 0
        for i in range(0, min(limit, len(body)), 16_384):
            chunk = body[i:min(i + 16_384, limit)]
            self.wfile.write(chunk)
            sent += len(chunk)
            if srv.delay:
                time.sleep(srv.delay)
        if sent < len(body):
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files = {"/file.bin": PAYLOAD}
    srv.requests = []
    srv.ranges = True
    srv.cut_after = None
    srv.delay = 0.0
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_UNMASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "repo_checkpoints_dir", lambda: None)


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_download_with_progress_and_checksum(server, tmp_path, capsys):
    path = fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints")
    assert path == tmp_path / "cache" / "checkpoints" / "net.pkl"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(path.parent) == ["net.pkl"]  # no .part left behind
    err = capsys.readouterr().err
    assert "net.pkl" in err and "100%" in err and "293k" in err.lower()  # tqdm bar with the total size
    # Cached: a second call makes no request.
    count = len(server.requests)
    assert fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints") == path
    assert len(server.requests) == count


def test_explicit_cache_dir_and_unverified_hash_is_printed(server, tmp_path, capsys):
    path = fetch(server.base + "/file.bin", "net.pkl", None, "weights", cache_dir=tmp_path / "mine",
                 reference_sha256=PAYLOAD_SHA, reference_source="the test mirror")
    assert path == tmp_path / "mine" / "weights" / "net.pkl"
    err = capsys.readouterr().err
    assert PAYLOAD_SHA in err and "unverified" in err and "matches the hash listed by the test mirror" in err


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError) as e:
        fetch(server.base + "/file.bin", "net.pkl", "0" * 64, "checkpoints")
    message = str(e.value)
    assert PAYLOAD_SHA in message and "0" * 64 in message and "deleted" in message
    assert _leftovers(tmp_path / "cache" / "checkpoints") == []


def test_resume_partial_download_with_range(server, tmp_path, capsys):
    folder = tmp_path / "cache" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "net.pkl.part").write_bytes(PAYLOAD[:123_456])
    path = fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints")
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/file.bin", "bytes=123456-")
    assert "Resuming" in capsys.readouterr().err


def test_interrupted_download_is_kept_and_resumed(server, tmp_path):
    server.cut_after = 100_000
    with pytest.raises(DownloadError) as e:
        fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints")
    part = tmp_path / "cache" / "checkpoints" / "net.pkl.part"
    assert "resume" in str(e.value) and str(part) in str(e.value)
    assert 0 < part.stat().st_size <= 100_000 and PAYLOAD.startswith(part.read_bytes())
    assert not (tmp_path / "cache" / "checkpoints" / "net.pkl").exists()
    kept = part.stat().st_size
    server.cut_after = None
    path = fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints")
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/file.bin", f"bytes={kept}-")
    assert not part.exists()


def test_server_without_range_restarts_cleanly(server, tmp_path, capsys):
    server.ranges = False
    folder = tmp_path / "cache" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "net.pkl.part").write_bytes(b"garbage that is not a prefix of the file" * 100)
    path = fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints")
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1][1] is not None  # we asked to resume ...
    assert "does not support resuming" in capsys.readouterr().err  # ... and started over


def test_oversized_part_is_discarded_on_416(server, tmp_path):
    folder = tmp_path / "cache" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "net.pkl.part").write_bytes(PAYLOAD + b"extra")
    path = fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints")
    assert path.read_bytes() == PAYLOAD


def _assert_manual_instructions(message: str, url: str, folder: Path, filename: str):
    assert url in message and filename in message and str(folder / filename) in message


def test_http_404_says_where_to_put_the_file(server, tmp_path):
    url = server.base + "/missing.pkl"
    with pytest.raises(DownloadError) as e:
        fetch(url, "missing.pkl", None, "checkpoints", search_dirs=[tmp_path / "repo-ckpts"])
    message = str(e.value)
    assert "HTTP 404" in message
    _assert_manual_instructions(message, url, tmp_path / "cache" / "checkpoints", "missing.pkl")
    _assert_manual_instructions(message, url, tmp_path / "repo-ckpts", "missing.pkl")
    assert _leftovers(tmp_path / "cache" / "checkpoints") == []


def test_connection_refused_says_where_to_put_the_file(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/net.pkl"
    with pytest.raises(DownloadError) as e:
        fetch(url, "net.pkl", None, "checkpoints", timeout=5)
    assert "could not connect" in str(e.value)
    _assert_manual_instructions(str(e.value), url, tmp_path / "cache" / "checkpoints", "net.pkl")


def test_search_dirs_are_used_first(server, tmp_path):
    local = tmp_path / "repo-ckpts"
    local.mkdir()
    (local / "ffhq.pkl").write_bytes(b"manually downloaded")
    path = fetch(server.base + "/file.bin", "stylegan2-ada-pytorch-ffhq.pkl", None, "checkpoints",
                 search_dirs=[local], local_names=["ffhq.pkl"])
    assert path == local / "ffhq.pkl" and server.requests == []


def test_concurrent_downloads_do_not_collide(server, tmp_path):
    server.delay = 0.01  # ~0.2 s per download, so the two overlap
    results, errors = [], []

    def worker():
        try:
            results.append(fetch(server.base + "/file.bin", "net.pkl", PAYLOAD_SHA, "checkpoints", progress=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == PAYLOAD
    assert len(server.requests) == 1  # the second process waited for the first and reused its file


def test_url_filename_is_safe_and_distinct():
    a = url_filename("https://example.com/a/ffhq.pkl?x=1")
    b = url_filename("https://example.org/b/ffhq.pkl")
    assert a.endswith("-ffhq.pkl") and b.endswith("-ffhq.pkl") and a != b
    assert "/" not in url_filename("https://example.com/../../etc/passwd/")


# ---- registry names and load_generator -----------------------------------------------


@pytest.fixture()
def test_entry(server, monkeypatch, ada_pkl):
    server.files["/nets/test-64.pkl"] = ada_pkl.read_bytes()
    entry = CheckpointEntry(
        name="test-64", url=server.base + "/nets/test-64.pkl", filename="test-64.pkl", resolution=64,
        description="fixture network", url_source="test", sha256=hashlib.sha256(server.files["/nets/test-64.pkl"]).hexdigest(),
    )
    monkeypatch.setitem(registry.REGISTRY, "test-64", entry)
    return entry


def test_registry_name_resolves_and_downloads(server, tmp_path, test_entry):
    path, origin = checkpoints.resolve_checkpoint("test-64", progress=False)
    assert path == tmp_path / "cache" / "checkpoints" / "test-64.pkl"
    assert "test-64" in origin and server.requests[-1][0] == "/nets/test-64.pkl"
    count = len(server.requests)
    G = checkpoints.load_generator("test-64", progress=False)
    assert len(server.requests) == count  # cached, not downloaded again
    assert G.img_resolution == 64 and "test-64" in G.source and not G.training
    # Pasting the registry URL reuses the named cache file.
    path2, _ = checkpoints.resolve_checkpoint(test_entry.url, progress=False)
    assert path2 == path and len(server.requests) == count


def test_repo_checkpoints_folder_is_used_first(server, tmp_path, test_entry, monkeypatch, ada_pkl):
    repo = tmp_path / "repo" / "checkpoints"
    repo.mkdir(parents=True)
    (repo / "test-64.pkl").write_bytes(ada_pkl.read_bytes())
    monkeypatch.setattr(download, "repo_checkpoints_dir", lambda: repo)
    path, _ = checkpoints.resolve_checkpoint("test-64", progress=False)
    assert path == repo / "test-64.pkl" and server.requests == []


def test_arbitrary_url_downloads_and_loads(server, tmp_path, ada_pkl, capsys):
    server.files["/x/network-snapshot-000123.pkl"] = ada_pkl.read_bytes()
    url = server.base + "/x/network-snapshot-000123.pkl"
    G = checkpoints.load_generator(url, key="G", progress=False)
    assert url in G.source and "[G," in G.source
    assert (tmp_path / "cache" / "checkpoints" / url_filename(url)).is_file()
    assert "unverified" in capsys.readouterr().err


def test_offline_registry_download_fails_with_instructions(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = CheckpointEntry(name="gone", url=f"http://127.0.0.1:{port}/gone.pkl", filename="gone.pkl",
                            resolution=64, description="", url_source="test")
    monkeypatch.setitem(registry.REGISTRY, "gone", entry)
    repo = tmp_path / "repo-ckpts"
    monkeypatch.setattr(download, "repo_checkpoints_dir", lambda: repo)
    with pytest.raises(DownloadError) as e:
        checkpoints.load_generator("gone", progress=False)
    message = str(e.value)
    assert entry.url in message and str(repo / "gone.pkl") in message
    assert str(tmp_path / "cache" / "checkpoints" / "gone.pkl") in message


def test_registry_contents():
    # The default is the shipped model (works offline); NVIDIA's networks are downloaded by name.
    assert registry.DEFAULT_NETWORK == "faces-128"
    for name in ("faces-128", "faces-64"):
        entry = registry.REGISTRY[name]
        assert entry.bundled and entry.url == "" and "UTKFace" in entry.licence
    for name in ("ffhq-1024", "ffhq-512", "ffhq-256", "ffhq-1024-ada"):
        entry = registry.get_entry(name)
        assert entry is not None and entry.url.startswith("https://") and entry.filename.endswith(".pkl")
        assert "non-commercial" in entry.licence
    assert registry.get_entry("FFHQ-1024").resolution == 1024
    assert registry.REGISTRY["ffhq-1024"].url.endswith("/stylegan2-ffhq-1024x1024.pkl")
    assert registry.REGISTRY["ffhq-1024-ada"].url == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    # No invented checksums: every enforced sha256 is either None or a 64-hex string.
    for entry in registry.REGISTRY.values():
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_UNMASK_CACHE", str(tmp_path / "env"))
    assert download.cache_root() == tmp_path / "env"
    assert download.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("STYLEGAN_UNMASK_CACHE")
    assert download.cache_root() == Path.home() / ".cache" / "stylegan-unmask"


def test_unknown_spec_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="unknown network"):
        checkpoints.resolve_checkpoint("not-a-network")
