"""VERSION is the one source of the version: the C++ binary, the Python package and the wheel read it;
`make bump-version` and `make git-release` work on a temporary copy (never on this repository's tags)."""
import shutil
import subprocess

import pytest

from conftest import ROOT


def test_versions_agree(mgp, mlxgp_bin):
    version = (ROOT / "VERSION").read_text().strip()
    assert mgp.__version__ == mgp._core.version() == version
    out = subprocess.run([str(mlxgp_bin), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == version


def git(repo, *args, check=True):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=check)


@pytest.fixture
def repo_copy(tmp_path):
    repo = tmp_path / "repo"
    for f in ("VERSION", "Makefile", "scripts/bump_version.py", "scripts/git_release.sh"):
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, repo / f)
    (repo / "VERSION").write_text("1.2.3\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init")
    return repo


def make(repo, *args):
    return subprocess.run(["make", "-s", "-C", str(repo), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repo)})


def test_bump_version(repo_copy):
    for part, want in (("patch", "1.2.4"), ("minor", "1.3.0"), ("major", "2.0.0")):
        r = make(repo_copy, "bump-version", f"PART={part}")
        assert r.returncode == 0, r.stderr
        assert (repo_copy / "VERSION").read_text().strip() == want
    r = make(repo_copy, "bump-version", "PART=huge")
    assert r.returncode != 0 and "[version]" in r.stderr
    assert (repo_copy / "VERSION").read_text().strip() == "2.0.0"


def test_git_release_tags_and_pushes(repo_copy, tmp_path):
    r = make(repo_copy, "git-release")  # no remote: tag only
    assert r.returncode == 0, r.stderr
    assert git(repo_copy, "tag").stdout.split() == ["v1.2.3"]
    r = make(repo_copy, "git-release")  # the tag exists
    assert r.returncode != 0 and "already exists" in r.stderr

    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(repo_copy, "remote", "add", "origin", str(remote))
    make(repo_copy, "bump-version", "PART=minor")
    r = make(repo_copy, "git-release")  # VERSION changed but not committed
    assert r.returncode != 0 and "uncommitted" in r.stderr
    git(repo_copy, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "1.3.0")
    r = make(repo_copy, "git-release")
    assert r.returncode == 0, r.stderr
    assert "v1.3.0" in git(remote, "tag").stdout.split()
