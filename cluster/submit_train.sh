#!/usr/bin/env bash
# Pretrain a backbone on a running Ray cluster with `ray job submit`.
#
#   cluster/submit_train.sh [key=value ...]
#
# The paths must be absolute and on storage every node mounts at the same path (the
# EFS at /mnt/shared of ray-cluster.yaml, the PVC of kuberay/): every training worker
# reads the images and writes checkpoints there. Other `lightly-train train` arguments
# go on the command line, e.g.
#   NUM_NODES=4 cluster/submit_train.sh epochs=200 batch_size=1024
#
# Environment:
#   RAY_ADDRESS  the job server; default http://127.0.0.1:8265, where
#                `ray dashboard cluster/ray-cluster.yaml` or
#                `kubectl port-forward svc/lightly-train-head-svc 8265:8265` forwards it
#   DATA, OUT, MODEL, METHOD, DEVICES, NUM_NODES  the train arguments below
#   RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token  the cluster's auth token
set -euo pipefail

address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
data="${DATA:-/mnt/shared/data/images}"
out="${OUT:-/mnt/shared/runs/simclr-resnet50}"
model="${MODEL:-torchvision/resnet50}"
method="${METHOD:-simclr}"
devices="${DEVICES:-4}"      # GPUs per node: a g5.12xlarge of ray-cluster.yaml has 4
num_nodes="${NUM_NODES:-1}"  # training workers = devices x num_nodes

# Token authentication (Ray >= 2.52): the client sends a token only when RAY_AUTH_MODE
# is token. Ray reads it from RAY_AUTH_TOKEN, else the file at RAY_AUTH_TOKEN_PATH, else
# ~/.ray/auth_token. As `ray start` does, turn token mode on when a token is there; a
# cluster without auth ignores it.
if [[ -z "${RAY_AUTH_MODE:-}" ]] && [[ -n "${RAY_AUTH_TOKEN:-}" ||
  -n "${RAY_AUTH_TOKEN_PATH:-}" || -f "${HOME}/.ray/auth_token" ]]; then
  export RAY_AUTH_MODE=token
fi

# lightly-train is installed in the cluster's image (cluster/Dockerfile): no working_dir
# to upload. PYTHONUNBUFFERED: the job's log shows progress as it happens.
exec ray job submit \
  --address "${address}" \
  --runtime-env-json '{"env_vars": {"PYTHONUNBUFFERED": "1"}}' \
  -- lightly-train train \
  "out=${out}" \
  "data=${data}" \
  "model=${model}" \
  "method=${method}" \
  accelerator=gpu \
  "devices=${devices}" \
  "num_nodes=${num_nodes}" \
  "$@"
