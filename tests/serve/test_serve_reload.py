"""A running server follows its model registry: promotion and rollback are served without a restart."""

from __future__ import annotations

import json
import shutil

import httpx
from serve_support import KEY, LiveServer, make_state, teach

from domainlm.serve.reload import RegistryWatcher, registry_link

ASK = [{"role": "user", "content": "你是哪个版本？"}]


def _answer(server) -> str:
    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": server.state.name, "messages": ASK, "max_tokens": 12, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_promotion_and_rollback_reach_a_running_server(tiny_dir, tmp_path):
    from domainlm.serve.flywheel import _point_current, init_registry, read_registry, rollback
    from domainlm.serve.server import make_asgi

    registry = tmp_path / "registry"
    init_registry(registry, str(tiny_dir))
    # What the flywheel's promotion does: a new version folder, then `current` pointed at it.
    teach(shutil.copytree(tiny_dir, registry / "versions" / "v0002"), lessons=[(ASK, None, "第二版为您服务。")], steps=60)
    link = registry_link(str(registry / "current"))
    assert link is not None and registry_link(str(tiny_dir)) is None

    state = make_state(registry / "current", f"sqlite:///{tmp_path / 'fb.db'}")
    watcher = RegistryWatcher(state, link)
    with LiveServer(make_asgi(state)) as server:
        server.state = state
        before = _answer(server)
        assert not watcher.check()  # nothing moved
        state_file = read_registry(registry)
        state_file["current"] = "v0002"
        state_file["history"].append({"version": "v0002", "time": 0, "run": "run-0001", "previous": "v0001"})
        (registry / "registry.json").write_text(json.dumps(state_file), encoding="utf-8")
        _point_current(registry, "v0002")
        assert watcher.check()
        assert _answer(server).startswith("第二版") and not before.startswith("第二版")
        rollback(registry)
        assert watcher.check()
        assert _answer(server) == before
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert "domainlm_model_swaps_total 2.0" in metrics


def test_a_version_that_fails_to_load_keeps_the_serving_model(tmp_path):
    from domainlm.serve.metrics import Metrics

    registry = tmp_path / "registry"
    (registry / "versions" / "v0001").mkdir(parents=True)
    (registry / "versions" / "v0002").mkdir()
    (registry / "registry.json").write_text("{}", encoding="utf-8")
    (registry / "current").symlink_to("versions/v0001")

    class State:
        model = "serving"
        metrics = Metrics()

    def loader(path):
        raise OSError(f"{path}: no config.json")

    watcher = RegistryWatcher(State, registry / "current", loader=loader)
    (registry / "current").unlink()
    (registry / "current").symlink_to("versions/v0002")
    assert not watcher.check() and State.model == "serving"
    assert not watcher.check()  # the broken version is not retried every few seconds
