"""Federated training with Flower: real SuperLink / SuperNode / ClientApp processes on loopback, tiny models.

The default suite runs one small federation end to end (2 clients, 2 rounds) and exports it; the federations
that take minutes (a client killed mid-round, a server with clients over TLS, the accuracy check) are slow.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import NO_TORCH, assert_one_line_error

from toolkit.errors import ToolkitError

pytest.importorskip("flwr")
pytest.importorskip("flwr_datasets")

TINY = ["--set", "model.hidden=[16]", "--set", "train.batch_size=32"]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _breast_csv(path: Path, drop: str | None = None, relabel: bool = False) -> Path:
    """scikit-learn's breast cancer as a CSV (feature columns, then `target`), optionally one column short or
    with a label the federation has never seen."""
    from sklearn.datasets import load_breast_cancer

    b = load_breast_cancer()
    names = [n.replace(" ", "_") for n in b.feature_names]
    keep = [i for i, n in enumerate(names) if n != drop]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([names[i] for i in keep] + ["target"])
        for row, t in zip(b.data[:200], b.target[:200]):
            w.writerow([f"{row[i]:g}" for i in keep] + [("unknown" if relabel and t else str(t))])
    return path


# --------------------------------------------------------------------------------------------- recipe keys
def test_federate_section_is_validated_and_left_out_when_unset():
    from toolkit.recipe import load_recipe

    rec = load_recipe(
        "mlp", ["federate.rounds=3", "federate.privacy.mode=server", "federate.partition=dirichlet:0.3"]
    )
    assert rec.federate.rounds == 3 and rec.federate.privacy.mode == "server"
    assert "federate" not in load_recipe("mlp").to_dict()  # centrally trained runs are unchanged
    assert rec.to_dict()["federate"]["partition"] == "dirichlet:0.3"
    for bad, needle in (
        ("federate.partition=dirichlet:-1", "dirichlet:ALPHA"),
        ("federate.strategy=fedsgd", "fedavg, fedprox, fedadam"),
        ("federate.fraction_fit=0", "fraction_fit"),
        ("federate.privacy.mode=strong", "none, server, client, local"),
    ):
        with pytest.raises(ToolkitError, match=needle):
            load_recipe("mlp", [bad])


def test_the_cli_and_package_load_without_torch_or_flower():
    """`toolkit --help` and `toolkit federate --help` must not need the federate extra (nor torch)."""
    block_flower = NO_TORCH.replace(
        "name == 'torch' or name.startswith('torch.')",
        "name.split('.')[0] in ('torch', 'flwr', 'flwr_datasets')",
    )
    code = block_flower + "import toolkit.federate, toolkit.cli.main\nprint('ok')\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.parametrize(
    "mode, wrapper",
    [
        ("none", "FedAvg"),
        ("server", "DifferentialPrivacyServerSideFixedClipping"),
        ("client", "DifferentialPrivacyClientSideFixedClipping"),
        ("local", "FedAvg"),  # local DP is a client mod (LocalDpMod); the server aggregates as usual
    ],
)
def test_privacy_modes_use_flowers_mechanisms_and_are_described(mode, wrapper):
    from toolkit.federate.privacy import describe
    from toolkit.federate.strategy import build_strategy
    from toolkit.recipe import load_recipe

    rec = load_recipe("mlp", [f"federate.privacy.mode={mode}", "federate.privacy.noise_multiplier=0.5"])
    strategy = build_strategy(rec.federate, clients=4, lr=1e-3)
    assert type(strategy.inner).__name__ == wrapper
    meta = describe(rec.federate.privacy, 4)
    assert meta["mode"] == mode
    if mode in ("server", "client"):
        assert meta["noise_std"] == pytest.approx(0.5 * 1.0 / 4) and wrapper in meta["mechanism"]
    if mode == "local":
        assert meta["epsilon"] == 10.0 and "LocalDpMod" in meta["mechanism"]


# --------------------------------------------------------------------------------------------- partitions
def test_partitions_cover_the_train_split_once_and_dirichlet_skews_labels():
    from toolkit.federate.partition import partition

    y = np.repeat(np.arange(10), 50)
    iid = partition("iid", 5, y, 0, "classify", None, {})
    skew = partition("dirichlet:0.1", 5, y, 0, "classify", None, {})
    for parts in (iid, skew):
        rows = np.concatenate(parts)
        assert len(rows) == len(y) and len(np.unique(rows)) == len(y)  # every row at exactly one client
        assert min(len(p) for p in parts) >= 10
    # IID clients see every class; with alpha=0.1 most clients see few of them.
    assert all(len(np.unique(y[p])) == 10 for p in iid)
    assert np.mean([len(np.unique(y[p])) for p in skew]) < 8
    assert partition("dirichlet:0.1", 5, y, 0, "classify", None, {})[0].tolist() == skew[0].tolist()  # seeded


def test_by_column_partition_gives_one_client_per_value():
    from toolkit.federate.partition import partition

    x = np.column_stack([np.repeat([0.0, 1.0, 2.0], 20), np.arange(60.0)])
    spec = {"kind": "tabular", "feature_names": ["site", "age"]}
    parts = partition("by-column:site", 3, np.zeros(60, int), 0, "classify", x, spec)
    assert sorted(len(np.unique(x[p, 0])) for p in parts) == [1, 1, 1]
    with pytest.raises(ToolkitError, match="has 3 values, so use --clients 3"):
        partition("by-column:site", 2, np.zeros(60, int), 0, "classify", x, spec)
    with pytest.raises(ToolkitError, match="no such feature column; columns: site, age"):
        partition("by-column:hospital", 3, np.zeros(60, int), 0, "classify", x, spec)
    with pytest.raises(ToolkitError, match="task regress has none: use iid"):
        partition("dirichlet:1", 3, np.zeros(60), 0, "regress", x, spec)


# --------------------------------------------------------------------------------------------- every recipe
SMALL = {
    "mlp": ["model.hidden=[8]"],
    "cnn": ["model.channels=[4]", "model.hidden=8"],
    "rnn": ["model.hidden=8", "model.embed_dim=8"],
    "lstm": ["model.hidden=8", "model.embed_dim=8"],
    "gru": ["model.hidden=8", "model.embed_dim=8"],
    "transformer": ["model.d_model=8", "model.heads=2", "model.ff_dim=16", "model.layers=1"],
    "autoencoder": ["model.hidden=[16]"],
}


@pytest.mark.parametrize(
    "name",
    [
        "mlp-tabular",
        "mlp-regress",
        "cnn-image",
        "rnn-forecast",
        "lstm-forecast",
        "gru-text",
        "transformer-text",
        "autoencoder-anomaly",
    ],
)
def test_every_shared_trainer_recipe_round_trips_through_a_client(name):
    """What a client does in one round, for each kind of recipe: the spec travels as JSON, the model as a
    Flower ArrayRecord; local training (FedProx term on) changes the weights and evaluation scores them."""
    from flwr.app import ArrayRecord

    from toolkit.federate import adapter
    from toolkit.recipe import load_recipe

    rec = load_recipe(name)
    rec = load_recipe(name, SMALL[rec.arch] + ["train.batch_size=64"])
    splits = adapter.load_splits(rec)
    spec = json.loads(json.dumps(splits.spec))  # as it travels in the ConfigRecord
    server = adapter.build_model(rec, spec, splits.input_shape, splits.num_outputs)
    arrays = ArrayRecord(server.state_dict())
    client = adapter.build_model(rec, spec, splits.input_shape, splits.num_outputs)
    client.load_state_dict(arrays.to_torch_state_dict())
    x, y = splits.x_train[:200], splits.y_train[:200]
    loss = adapter.train_local(client, rec, spec, x, y, epochs=1, proximal_mu=0.01)
    assert np.isfinite(loss)
    moved = [
        (a - b).abs().sum().item() for a, b in zip(client.state_dict().values(), server.state_dict().values())
    ]
    assert sum(moved) > 0
    scores = adapter.evaluate(client, rec, spec, splits.x_val, splits.y_val)
    main, _ = adapter.main_metric(rec)
    assert np.isfinite(scores["loss"]) and main in scores


# --------------------------------------------------------------------------------------------- bad input
def test_gan_is_refused_with_one_line(cli):
    assert_one_line_error(cli("federate", "gan", "--clients", "2"), "does not support gan-generate")


def test_more_clients_than_samples_allow_is_refused(cli, tmp_path):
    result = cli("federate", "mlp-tabular", "--clients", "40", "--out", tmp_path / "run")
    assert_one_line_error(result, "--clients 40 is too many for 370 training samples", "use --clients 37")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_client_data_with_other_columns_or_labels_is_refused_before_training(cli, tmp_path):
    good = _breast_csv(tmp_path / "good.csv")
    short = _breast_csv(tmp_path / "short.csv", drop="mean_radius")
    relabelled = _breast_csv(tmp_path / "relabelled.csv", relabel=True)
    args = [
        "federate",
        "mlp-tabular",
        "--data",
        good,
        "--set",
        "data.target=target",
        "--out",
        tmp_path / "run",
    ]
    result = cli(*args, "--client-data", good, "--client-data", short)
    assert_one_line_error(result, "client 1 refused", "short.csv", "missing ['mean_radius']")
    result = cli(*args, "--client-data", relabelled, "--client-data", good)
    assert_one_line_error(result, "client 0 refused", "labels ['unknown'] were not seen")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("listening", [False, True], ids=["closed-port", "silent-listener"])
def test_a_client_whose_server_does_not_answer_fails_in_bounded_time(cli, listening):
    """Nobody on the port, or a socket that accepts connections and never replies: one line, in bounded time."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if listening:
            s.listen(8)
        else:
            s.close()
        t0 = time.monotonic()
        result = cli(
            "federate", "client", "--data", "builtin:iris", "--server", f"127.0.0.1:{port}", "--insecure",
            "--connect-timeout", "2",
        )  # fmt: skip
    assert_one_line_error(result, f"no Flower server answers at 127.0.0.1:{port} (waited 2 s")
    assert time.monotonic() - t0 < 15


def test_server_refuses_to_start_without_tls_or_insecure(cli):
    result = cli("federate", "server", "mlp-tabular", "--clients", "2")
    assert_one_line_error(
        result, "TLS needs --ssl-ca-certfile and --ssl-certfile and --ssl-keyfile", "--insecure"
    )


# --------------------------------------------------------------------------------------------- end to end
@pytest.mark.timeout(900)
def test_simulation_writes_a_normal_run_that_exports(cli, tmp_path):
    """2 client processes, 2 rounds, client-side DP clipping: the run directory is what `toolkit train`
    writes, export reads it unchanged, and the federation and its privacy settings travel into the model."""
    run = tmp_path / "run"
    result = cli(
        "federate", "mlp-tabular", "--clients", "2", "--rounds", "2", "--privacy", "client",
        "--noise-multiplier", "0.0", "--clipping-norm", "5.0", *TINY, "--out", run, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in (
        "recipe.yaml",
        "data.json",
        "metrics.csv",
        "metrics.json",
        "curves.png",
        "best.pt",
        "last.pt",
    ):
        assert (run / name).is_file(), name
    rows = _rows(run)
    assert [r["round"] for r in rows] == ["0", "1", "2"]  # round 0: the initial global model
    for r in rows[1:]:
        assert r["clients"] == "2" and r["failed"] == "0"
        assert int(r["bytes_down"]) > 0 and int(r["bytes_up"]) > 0
        assert {"client0_train_loss", "client1_local_accuracy"} <= r.keys()
        assert 0.0 <= float(r["val_accuracy"]) <= 1.0
    data = json.loads((run / "data.json").read_text())
    assert sum(c["samples"] for c in data["clients"]) == data["samples"]["train"] == 370
    metrics = json.loads((run / "metrics.json").read_text())
    fed = metrics["federated"]
    assert fed["strategy"] == "fedavg" and fed["clients"] == 2 and fed["rounds_run"] == 2
    assert fed["privacy"]["mode"] == "client" and fed["privacy"]["clipping_norm"] == 5.0
    assert "Flower" in fed["engine"] and fed["bytes_per_round"] > 0
    result = cli("export", run, "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "model.json").read_text())
    assert meta["metrics"]["federated"]["privacy"]["mode"] == "client"
    assert meta["recipe"]["federate"]["privacy"]["clipping_norm"] == 5.0
    assert meta["metrics"]["accuracy"] == metrics["accuracy"]
    # validate recomputes the test metrics with onnxruntime and compares them with the ones recorded
    result = cli("validate", run / "model.onnx", "--run", run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["passed"] and report["metrics"]


# --------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.timeout(1200)  # minutes of Flower processes on a loaded 2-core machine
def test_a_client_killed_mid_round_does_not_stop_the_federation(tmp_path):
    """Kill one client's SuperNode (and its ClientApp) while round 2 is out: Flower reports it unavailable,
    the round is aggregated from the others, and the run finishes."""
    from toolkit.federate import simulate

    killed = []

    def kill_client2(server_round, federation):
        if server_round == 1 and not killed:
            federation.stop("client2", sig=9)
            killed.append(time.monotonic())

    overrides = ["federate.clients=3", "federate.rounds=3", "model.hidden=[16]"]
    res = simulate("mlp-tabular", overrides=overrides, out=tmp_path / "run", on_round=kill_client2)
    rows = [r for r in res.history if int(r["round"]) > 0]
    assert killed and len(rows) == 3
    assert rows[0]["clients"] == "3"
    after = rows[1:]
    assert sum(int(r["failed"]) for r in after) >= 1 or any(r["clients"] == "2" for r in after)
    assert all(int(r["clients"]) >= 2 for r in after)
    assert res.metrics["federated"]["rounds_run"] == 3 and res.metrics["accuracy"] > 0.5


@pytest.mark.slow
@pytest.mark.timeout(1200)  # minutes of Flower processes on a loaded 2-core machine
def test_federated_digits_reach_good_accuracy_on_a_skewed_partition(tmp_path):
    from toolkit.federate import simulate

    """The bench's goal in small: digits under label skew (Dirichlet 0.5), 4 clients, 6 rounds of FedAvg."""
    overrides = ["federate.clients=4", "federate.rounds=6", "federate.partition=dirichlet:0.5"]
    overrides += ["federate.local_epochs=5", "train.batch_size=32", "data.source=builtin:digits"]
    overrides += ["model.hidden=[64]"]
    res = simulate("mlp-tabular", overrides=overrides, out=tmp_path / "run")
    assert res.metrics["accuracy"] >= 0.9, res.metrics


def _toolkit(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)  # minutes of Flower processes on a loaded 2-core machine
def test_server_and_clients_over_tls_and_a_client_with_other_columns_is_refused(tmp_path):
    """A deployment on loopback: `toolkit federate server` with TLS and SuperNode authentication, two
    `toolkit federate client` processes verifying it with the CA and signing with their registered keys; a
    third client whose CSV lacks a column leaves with one line, the others train."""
    certs = _make_certificates(tmp_path)
    keys = [_make_node_key(tmp_path / f"node{i}") for i in range(3)]
    good = _breast_csv(tmp_path / "good.csv")
    short = _breast_csv(tmp_path / "short.csv", drop="mean_radius")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _toolkit(
        "federate", "server", "mlp-tabular", "--data", str(good), "--set", "data.target=target",
        "--clients", "3", "--rounds", "2", "--address", f"127.0.0.1:{port}", "--ssl-ca-certfile", certs["ca"],
        "--ssl-certfile", certs["cert"], "--ssl-keyfile", certs["key"], "--out", str(tmp_path / "run"),
        "--json", "--connect-timeout", "120", *[a for k in keys for a in ("--auth-key", k["public"])],
    )  # fmt: skip
    tls = ["--server", f"127.0.0.1:{port}", "--root-certificates", certs["ca"], "--connect-timeout", "60"]

    def client(data: Path, i: int) -> subprocess.Popen:
        return _toolkit(
            "federate",
            "client",
            "--data",
            str(data),
            "--client-id",
            str(i),
            "--auth-key",
            keys[i]["private"],
            *tls,
        )

    clients = [client(good, 0), client(good, 1)]
    bad = client(short, 2)
    try:
        out, err = server.communicate(timeout=400)
        assert server.returncode == 0, err[-2000:]
        _, bad_err = bad.communicate(timeout=60)
        assert bad.returncode == 2
        assert bad_err.strip().splitlines()[-1].startswith("error: client 2: ")
        assert "missing ['mean_radius']" in bad_err
    finally:
        for p in (*clients, bad, server):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
    metrics = json.loads(out[out.index("{") :])
    assert metrics["federated"]["mode"] == "deployment"
    assert metrics["federated"]["security"] == {"tls": True, "supernode_auth": True}
    rows = _rows(tmp_path / "run")
    assert rows[1]["clients"] == "2" and rows[1]["failed"] == "1"  # the refused client, reported as a failure


def _make_certificates(tmp: Path) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1 / localhost (cryptography comes with Flower)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, key, sign_key, ca: bool, san=None):
        b = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        b = b.serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        b = b.not_valid_after(now + datetime.timedelta(days=2))
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(sign_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "toolkit test CA")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    paths = {"ca": tmp / "ca.crt", "cert": tmp / "server.pem", "key": tmp / "server.key"}
    paths["ca"].write_bytes(
        cert(ca_name, ca_name, ca_key, ca_key, True).public_bytes(serialization.Encoding.PEM)
    )
    paths["cert"].write_bytes(
        cert(name, ca_name, key, ca_key, False, san).public_bytes(serialization.Encoding.PEM)
    )
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {k: str(v) for k, v in paths.items()}


def _make_node_key(stem: Path) -> dict[str, str]:
    """A SuperNode key pair as Flower reads it: EC P-384, OpenSSH format (like `ssh-keygen -t ecdsa -b 384`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = stem.with_suffix(".key"), stem.with_suffix(".pub")
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return {"private": str(private), "public": str(public)}
