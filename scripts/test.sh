#!/usr/bin/env bash
# The whole test suite: installs what is needed, then runs the Swift tests (kernels, model against the
# NumPy reference, training, bad input), the command-line tests and the multi-process tests (data, pipeline and tensor
# parallelism, ZeRO-2/3, checkpoints resharded between layouts) and the interruption tests (signals, full disks)
# under mpirun, and keel launch inside a local one-machine Slurm (srun, kill -9 recovery).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_corpus.sh   # the tokenizer tests compare against tiktoken on the Shakespeare corpus
bash scripts/fetch_web_fixtures.sh   # the WARC tests read pywb's sample crawl against its index
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
export PATH="$PWD/.venv/bin:$PATH"   # the reference tools scripts/setup.sh installed
# The BLAS calibration of this run goes to a scratch cache, not the user's ~/.cache/keel/blas.json.
XDG_CACHE_HOME=$(mktemp -d)
export XDG_CACHE_HOME
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
swift build
swift test
# The bf16 kernel, model and training tests again on the engines a CPU without bf16 instructions uses, wherever they
# are not the one Keel picks (that one ran above): blas (the fp32 library on rounded operands), avx2 (widening in
# registers) and, on CPUs with AVX-512F but no BF16 (whose fallback it is), avx512f: their packed weights, attention
# and training are tested wherever they can run, avx512f only where a CPU would use it.
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { for flag in "$@"; do grep -qw "$flag" <<<"$flags" || return 1; done; }
engines=""
has avx512_bf16 && engines="blas"
has avx2 fma && engines="$engines avx2"
has avx2 fma avx512f && ! has avx512_bf16 && engines="$engines avx512f"
for engine in $engines; do
    echo "bf16 tests on the $engine engine"
    KEEL_BF16_ENGINE=$engine swift test --skip-build --filter 'BFloat16GemmTests|MixedPrecisionTests|testBFloat16TrainingTracksFloat32'
done
bash Tests/CLI/cli_tests.sh .build/debug/keel
bash Tests/CLI/dedup_tests.sh .build/debug/keel
bash Tests/CLI/plan_tests.sh .build/debug/keel
bash Tests/CLI/report_tests.sh .build/debug/keel
bash Tests/CLI/mpi_tests.sh .build/debug/keel
bash Tests/CLI/pipeline_tests.sh .build/debug/keel
bash Tests/CLI/tensor_tests.sh .build/debug/keel
bash Tests/CLI/sharding_tests.sh .build/debug/keel
bash Tests/CLI/resharding_tests.sh .build/debug/keel
bash Tests/CLI/interruption_tests.sh .build/debug/keel
bash Tests/CLI/slurm_tests.sh .build/debug/keel
