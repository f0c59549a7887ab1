#!/usr/bin/env bash
# Paper tables under a profile, beside the default profile's: metrics/ablations/<profile name>/<table>.{md,json}.
#
#   scripts/ablations_under_profile.sh profiles/paper.yaml table4a table4b
#
# The ablation rows are DVC experiments measured against a baseline commit (python -m a2gnn.pipeline.ablations). Under a
# profile that baseline is the profile's own run, so this works in a throw-away clone of HEAD that shares this
# repository's DVC cache: apply the profile, reproduce the tables' target there and commit it (the clone's
# baseline), run the tables' rows as experiments, copy the written tables back here. Nothing of this checkout
# changes except metrics/ablations/<profile name>/. Run it with the environment active (source .venv/bin/activate).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <profile.yaml> <table> [<table> ...]" >&2; exit 2; }
profile=$1; shift
here=$(git rev-parse --show-toplevel)
name=$(basename "$profile" .yaml)
[ -f "$here/$profile" ] || [ -f "$profile" ] || { echo "$0: no profile $profile" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/a2gnn-ablations-$name.XXXXXX")
git clone -q "$here" "$work/repo"
cd "$work/repo"
dvc cache dir --local "$here/.dvc/cache"
dvc checkout -q
python -m a2gnn.pipeline.profiles "$profile"
dvc repro evaluate_pseudo_labels
git add -A params.yaml dvc.lock metrics
git -c user.name=a2gnn -c user.email=a2gnn@localhost commit -qm "baseline: $profile"
python -m a2gnn.pipeline.ablations "$@" --run --jobs 1
mkdir -p "$here/metrics/ablations/$name"
for table in "$@"; do
  cp "metrics/ablations/$table.md" "metrics/ablations/$table.json" "$here/metrics/ablations/$name/"
done
echo "wrote metrics/ablations/$name/ ($*); the clone is $work/repo"
