import re
from pathlib import Path

from kenprune import provenance


def test_every_record_names_versions_machine_command_and_the_source_commit():
    record = provenance.record()
    assert record["versions"]["torch"] and record["versions"]["transformers"]
    assert record["machine"]["cpu_count"] >= 1 and isinstance(record["argv"], list)
    checkout = (Path(provenance.__file__).resolve().parents[2] / ".git").exists()
    if checkout:
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["kenprune_commit"])
    else:  # an installed wheel has no commit to report, and says nothing rather than something wrong
        assert "kenprune_commit" not in record
