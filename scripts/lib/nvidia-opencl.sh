# Sourced by scripts/gpu-check and scripts/gpu-e2e on the GPU machine: registers NVIDIA's OpenCL
# driver through a vendor directory of our own (the bare image has no /etc/OpenCL/vendors entry
# for it; MACHINE-NOTES.md) and selects the GPU. Sets NVIDIA_OPENCL to the driver's path (empty:
# not found). Call it directly, not in $(...): the exports must reach the caller's shell.
register_nvidia_opencl() {  # register_nvidia_opencl ICD_DIR
  local icd=$1 d f
  NVIDIA_OPENCL=""
  for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/cuda/lib64 /usr/lib; do
    for f in "$d"/libnvidia-opencl.so.1 "$d"/libnvidia-opencl.so*; do
      [ -e "$f" ] && { NVIDIA_OPENCL="$f"; break 2; }
    done
  done
  [ -z "$NVIDIA_OPENCL" ] && NVIDIA_OPENCL="$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so/{print $NF; exit}')"
  mkdir -p "$icd"
  [ -n "$NVIDIA_OPENCL" ] && echo "$NVIDIA_OPENCL" >"$icd/nvidia.icd"
  export OCL_ICD_VENDORS="$icd"
  export SPARSELOOM_OPENCL_DEVICE=gpu
}
