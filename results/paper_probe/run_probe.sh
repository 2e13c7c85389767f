#!/bin/bash
cd "$(dirname "$0")/../.."  # repository root; needs make data (or ctfrpu data fetch)
mkdir -p out/paper_probe
export CTFRPU_STORE=${CTFRPU_STORE:-runs/paper_probe.db}
P=src/ctfrpu/presets/ctf_paper.toml
for seed in 0 1 2 3 4; do
  .venv/bin/ctfrpu train --dataset mnist --train-limit 8000 --epochs 3 --lr 0.1 --seed $seed --json > out/paper_probe/p3_fp_x_x_$seed.json 2>/dev/null
  for n in 100 300 1000; do for gap in 100ns 10us 100us; do
    .venv/bin/ctfrpu train --dataset mnist --device ctf --device-params $P --set update.timing=train --compensation gain --pulses $n --gap $gap --train-limit 8000 --epochs 3 --lr 0.1 --seed $seed --json > out/paper_probe/p3_gain_${n}_${gap}_$seed.json 2>>out/paper_probe/p3_err.txt
  done; done
done
echo done > out/paper_probe/p3_done
