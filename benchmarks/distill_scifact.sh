#!/usr/bin/env bash
# A real pooling-aware fine-tune on this CPU: SciFact train, all-MiniLM-L6-v2 as retriever, teacher
# (bi-encoder cosine, sharpened by --teacher-temperature) and student base; before/after NDCG@10 on
# SciFact test at pool factors 1, 2, 4, 6 with k-means pooling.
#   bash benchmarks/distill_scifact.sh [OUT] [STEPS]
set -euo pipefail
data="$(cd "$(dirname "$0")/../.." && pwd)/shared/data/scifact"
out="${1:-distill-scifact}"
steps="${2:-60}"
mkdir -p "$out"
time latepool mine --data "$data" --split train --retriever minilm --output "$out/mined"
time latepool score --mined "$out/mined" --data "$data" --split train --teacher minilm --output "$out/scores"
time latepool evaluate --model minilm --data "$data" --methods kmeans --pool-factors 1,2,4,6 --output "$out/eval-before"
time latepool train --model minilm --scores "$out/scores" --data "$data" --split train --pool-method kmeans \
    --pool-factors 1-6 --n-ways 8 --batch-size 4 --lr 1e-4 --teacher-temperature 0.05 --max-steps "$steps" \
    --save-steps 20 --output "$out/model"
time latepool evaluate --model "$out/model" --data "$data" --methods kmeans --pool-factors 1,2,4,6 --output "$out/eval-after"
echo "before:"; cat "$out/eval-before/table.md"
echo "after ($steps steps):"; cat "$out/eval-after/table.md"
