# Pool(slurm=dict(...)): tasks on `pepita worker`s submitted as Slurm jobs, through the slurm
# module's registration. Bad settings fail at Pool(), naming them. (A round trip on a Slurm
# cluster is not here yet: tests/slurm covers the executor itself.)
import pytest

import pepita


@pytest.mark.parametrize("slurm, exc, says", [
    ("nodes=1", TypeError, "slurm must be a dict"),
    ({"nodes": object()}, TypeError, "slurm['nodes'] must be"),
    ({"nodez": 1}, pepita.InvalidArgumentError, "nodez"),
    ({"nodes": "many"}, pepita.InvalidArgumentError, "nodes"),
    ({"slurm_bin_dir": "/nonexistent-slurm-bin"}, pepita.NotFoundError, "sbatch not found"),
])
def test_bad_slurm_settings_fail_at_pool_naming_them(pepita_cli, slurm, exc, says):
    with pytest.raises(exc) as info:
        pepita.Pool(slurm=slurm)
    assert says in str(info.value)


def test_workers_and_slurm_exclude_each_other(tmp_path):
    with pytest.raises(ValueError, match="exclude each other"):
        pepita.Pool(workers=["127.0.0.1:1"], key=str(tmp_path / "k"), slurm={"nodes": 1})
