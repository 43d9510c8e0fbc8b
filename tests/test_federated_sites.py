"""A deployed site as its ClientApp sees it (read from the store its SuperNode names) and
the Flower commands twinkit builds; no Flower processes are started here."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinkit.core.errors import TwinkitError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine

pytest.importorskip("flwr")
from flwr.app import Context, RecordDict

from twinkit.engine import federation
from twinkit.federated import Plan
from twinkit.models.gru import GRUAttention


def _context(**node: str) -> Context:
    return Context(run_id=1, node_id=7, node_config=dict(node), state=RecordDict(), run_config={})


def test_a_site_reads_its_store_names_itself_by_its_data_and_may_refuse_priors(
    tmp_path: Path,
) -> None:
    # Prepare
    url = f"sqlite:///{tmp_path / 'site.db'}"
    engine = TwinEngine(url)
    cohort = synthetic_cohort(n_twins=2, days=2, seed=0)
    for twin in sorted(cohort["twin_id"].unique()):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)
    plan = Plan.of(GRUAttention(hidden=4, seed=0), sites=2)

    # Execute
    site = federation._store_site(_context(store=url), plan)
    refusing = federation._store_site(_context(store=url, install="false"), plan)
    again = federation._store_site(_context(store=url), Plan.of(GRUAttention(seed=1), sites=2))

    # Assert: the twins' training parts, a pseudonym from the data (not the twin ids)
    assert len(site.histories) == 2 and site.install is not None
    assert refusing.install is None and refusing.name == site.name
    assert site.name.startswith("site-") and "synth" not in site.name
    assert again.name != site.name  # the run's seed salts it
    with pytest.raises(TwinkitError, match="names no store"):
        federation._store_site(_context(), plan)


def test_the_flower_commands_carry_the_site_settings() -> None:
    command = federation.supernode_command(
        "10.0.0.1:9092",
        "sqlite:////data/a.db",
        owner="clinic",
        twins=["p1", "p2"],
        port=9100,
        root_certificates=Path("ca.crt"),
        accept_priors=False,
    )
    config = command[command.index("--node-config") + 1]
    assert config == 'store="sqlite:////data/a.db" install="false" owner="clinic" twins="p1,p2"'
    assert "--insecure" not in command and command[command.index("--port") + 1] == "9100"
    assert "--insecure" in federation.superlink_command(port=9092)
    with pytest.raises(TwinkitError, match="double quote"):
        federation.supernode_command("h:1", 'sqlite:///a"b.db')


def test_certificates_name_the_hosts_and_give_each_site_an_openssh_key(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    written = federation.make_certificates(tmp_path, ["127.0.0.1", "coord.example"], sites=2)

    assert sorted(p.name for p in written) == [
        "ca.crt", "ca.key", "server.key", "server.pem", "site-1", "site-1.pub", "site-2",
        "site-2.pub",
    ]  # fmt: skip
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "coord.example" in names.get_values_for_type(x509.DNSName)
    key = load_ssh_private_key((tmp_path / "site-1").read_bytes(), None)
    assert key.curve.name == "secp384r1"  # type: ignore[union-attr]
    assert (tmp_path / "site-1").stat().st_mode & 0o077 == 0


def test_forgetting_a_twin_withdraws_a_prior_installed_by_a_deployed_federation(
    tmp_path: Path,
) -> None:
    # Prepare: a site's store holding a prior a deployed run installed (its record says so)
    from twinkit.engine.population import collect_histories, register_prior

    engine = TwinEngine(f"sqlite:///{tmp_path / 'site.db'}")
    cohort = synthetic_cohort(n_twins=2, days=2, seed=0)
    for twin in sorted(cohort["twin_id"].unique()):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)
    data = collect_histories(engine.store, None, "glucose")
    model = GRUAttention(hidden=4, epochs=1, seed=0).fit_population(data.histories)
    record = {"engine": "flower-deployment", "rounds": 3, "this_site": "site-x"}
    installed = register_prior(engine.store, engine.artifacts, model, data, "federated", record)

    # Execute
    forgotten = engine.forget("synth-001")

    # Assert: withdrawn, weights gone, nothing retrained here (the other sites hold data)
    assert forgotten.withdrawn == [installed.version] and forgotten.replaced == {}
    assert engine.populations() == [] and not engine.artifacts.path(installed.sha256).exists()
    entry = [e for e in engine.history() if e.event == "population_withdrawn"][-1]
    assert entry.payload["replaced_by"] is None and "run replaces it" in entry.payload["reason"]
