#!/bin/sh
# The GPU checks of a lent machine, in one go (see docs/benchmarks-gpu.md):
#   sh benchmarks/device_run.sh OUT_DIR
# Needs, in .whl/, wheels of what the machine lacks (ruff, sympy), fetched beforehand with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl ruff==0.17.6 sympy==1.14.0
# Writes OUT_DIR/gpu.log and OUT_DIR/benchmarks-gpu.md.
out=${1:?usage: sh benchmarks/device_run.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{
    nvidia-smi -L
    python3 -c "import sympy, torch; print('sympy', sympy.__version__, 'torch', torch.__version__)"
    python3 -m pytest -q -p no:cacheprovider tests/test_generated_vs_torch.py -k cuda
    for cell in rnn lstm gru; do
        python3 -m symbptt verify --device cuda --cell "$cell" --steps 20 --input-size 5 --hidden-size 7
    done
    python3 -m symbptt verify --device cuda --cell lstm --steps 20 --input-size 5 --hidden-size 7 \
        --proj-size 3 --num-layers 2 --bidirectional --packed
    python3 benchmarks/gpu.py --out "$out/benchmarks-gpu.md"
} 2>&1 | tee "$out/gpu.log"
