#!/usr/bin/env bash
# Spark's GPU discovery script for seqrec (spark.driver/executor/worker.resource.gpu.discoveryScript):
# prints the GPUs this process may use in the ResourceInformation format Spark reads, e.g.
#     {"name": "gpu", "addresses": ["0", "1"]}
# `python -m seqrec.train.gpu --discovery-script` prints where the installed copy is.
#
# Like Spark's example script (examples/src/main/scripts/getGpusResources.sh) it lists the
# indices nvidia-smi reports, and it assumes what that script assumes: the driver or executor
# runs where only its own GPUs are visible (a YARN or Kubernetes container, one standalone worker
# per machine). It differs in two ways:
# - no nvidia-smi, or an nvidia-smi that fails (no driver): an empty list and a note on stderr,
#   so that Spark's own check names the missing GPUs; the example prints [""] there.
# - CUDA_VISIBLE_DEVICES set: the positions 0..n-1 in that list (none when it is empty),
#   because TorchDistributor reads each address as an index into CUDA_VISIBLE_DEVICES when the
#   variable is set (pyspark.ml.torch.distributor._get_gpus_owned).
# Only bash builtins besides nvidia-smi, so that it runs on a minimal PATH.
set -u

if ! listed="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)"; then
    echo "gpu_discovery.sh: nvidia-smi is missing or failed: no GPU found" >&2
    listed=""
fi
indices=()
while IFS= read -r line; do
    line="${line//[[:space:]]/}"
    [[ "$line" =~ ^[0-9]+$ ]] && indices+=("$line")
done <<< "$listed"

if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    # CUDA stops reading the list at its first entry that is not a device index or UUID.
    visible=0
    IFS=',' read -r -a entries <<< "$CUDA_VISIBLE_DEVICES"
    for entry in ${entries[@]+"${entries[@]}"}; do
        [[ "$entry" =~ ^([0-9]+|GPU-.+|MIG-.+)$ ]] || break
        visible=$((visible + 1))
    done
    ((visible > ${#indices[@]})) && visible=${#indices[@]}
    indices=()
    for ((i = 0; i < visible; i++)); do
        indices+=("$i")
    done
fi

addresses=""
for index in ${indices[@]+"${indices[@]}"}; do
    addresses+="${addresses:+, }\"$index\""
done
echo "{\"name\": \"gpu\", \"addresses\": [$addresses]}"
