#!/usr/bin/env bash
# make git-release: tags the current commit vX.Y.Z (from VERSION) and pushes the tag to each remote,
# if any. Refuses a dirty tree or an existing tag, so a release always names committed code.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version="$(tr -d '[:space:]' < VERSION)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "[release] VERSION must hold X.Y.Z, got '$version'" >&2; exit 2; }
tag="v$version"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "[release] the working tree has uncommitted changes; commit them first" >&2; exit 2
fi
if git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
  echo "[release] tag $tag already exists (make bump-version first)" >&2; exit 2
fi
git tag -a "$tag" -m "mlx-gen-parity $version"
echo "tagged $tag"
for remote in $(git remote); do
  git push "$remote" "$tag"
  echo "pushed $tag to $remote"
done
