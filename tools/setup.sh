#!/usr/bin/env bash
# Idempotent set-up: system tools, a virtual environment, this package at the versions locked for its Python.
#
#   tools/setup.sh                          # everything into .venv; run again, it checks .venv and installs nothing
#   PYTHON=python3.12 VENV=.venv-py312 tools/setup.sh   # another Python (so another espnet) in its own venv
#   SKIP_APT=1 tools/setup.sh               # no system packages (install espeak-ng and ffmpeg yourself)
#   ESPNET_GATED_UNLOCKED=1 tools/setup.sh  # no lock: setup.py's exact pins, everything else at its newest release
#   tools/setup.sh --relock --upgrade       # re-resolve this Python's lock (pip-compile options follow), install it
#
# The Python decides the ESPnet release: 3.10-3.11 get espnet 202511, 3.12-3.13 espnet 202611 (setup.py's
# markers; the table is espnet_gated/envcheck.py: SUPPORTED). Each Python has its own lock,
# tools/lock/<platform>.txt (linux-x86_64-cpython3.11.txt, ...-cpython3.12.txt, ...), with the exact version of
# every distribution; it is pip's constraints file. A platform without a lock gets setup.py's exact pins only,
# with a warning.
# VENV (default .venv) is the venv's directory. PYTHON (default: python3 for a new venv) is its interpreter; an
# existing venv keeps the Python it was made with: without PYTHON that one is used, and a PYTHON of another
# version stops set-up with a message (nothing is deleted; choose another VENV or remove the old one).
# `python -m espnet_gated.envcheck` ends every run: the espnet x Python combination, versions against the lock,
# ESPnet's S2T task imports; when it fails it prints what is wrong and what to do. $VENV/.espnet_gated_installed
# records what was installed (the mode and a checksum of setup.py, pyproject.toml and the lock): a run whose
# record matches and whose check passes changes nothing; otherwise pip installs from the lock, which also repairs
# a venv that holds other versions. See README.md, "Installation notes".
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }
# GB free on the filesystem that holds $1
free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT

relock=0
if [ "${1:-}" = --relock ]; then
    relock=1
    shift
elif [ $# -gt 0 ]; then
    die "unknown option '$1' (the options are at the top of $0)"
fi

venv=${VENV:-.venv}
venv=${venv%/}
[ -n "${venv}" ] || die "VENV is empty (the venv's directory, default .venv)"
venv_python=${venv}/bin/python
# Python X.Y of an interpreter, or nothing if it does not run (a pyenv shim of a version not selected fails)
minor_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }

# the interpreter first: an unsupported one stops here, before apt and pip
if [ -e "${venv}" ]; then
    [ -d "${venv}" ] || die "VENV=${venv} exists and is not a directory"
    have=$(minor_version "${venv_python}")
    [ -n "${have}" ] || die "${venv} exists but ${venv_python} does not run (its Python was removed?); remove it (rm -rf ${venv}) and run $0 again"
    if [ -n "${PYTHON:-}" ]; then
        want=$(minor_version "${PYTHON}")
        [ -n "${want}" ] || die "PYTHON=${PYTHON} does not run ($("${PYTHON}" --version 2>&1 | head -1)); set PYTHON to a Python 3.10-3.13"
        [ "${want}" = "${have}" ] || die "${venv} was made with Python ${have}, not PYTHON=${PYTHON} (Python ${want}); each Python has its own espnet and lock, so set up another venv (PYTHON=${PYTHON} VENV=${venv}-py${want/./} $0) or remove this one (rm -rf ${venv})"
    fi
    python=${venv_python}
    say "${venv} exists, made with Python ${have}${PYTHON:+ (PYTHON=${PYTHON})}: using it"
else
    python=${PYTHON:-python3}
    [ -n "$(minor_version "${python}")" ] || die "PYTHON=${python} does not run ($("${python}" --version 2>&1 | head -1)); set PYTHON to a Python 3.10-3.13"
fi
# which espnet and lock this Python gets, and why (envcheck's table); an unsupported Python stops here
plan=$("${python}" -m espnet_gated.envcheck --plan) || die "${plan#envcheck: FAILED: }"
say "${plan}"

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
    if [ "${SKIP_APT:-0}" = 1 ]; then
        echo "setup: missing ${need[*]}; install them (Debian/Ubuntu: sudo apt-get install ${need[*]})" >&2
    else
        sudo=()
        if [ "$(id -u)" != 0 ]; then
            command -v sudo >/dev/null || die "missing ${need[*]} and no root: sudo apt-get install ${need[*]} (macOS: brew install ${need[*]}), then SKIP_APT=1 $0"
            sudo=(sudo)
        fi
        say "installing ${need[*]} with apt-get"
        { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } \
            || die "apt-get install ${need[*]} failed (its error is above); install them yourself and run SKIP_APT=1 $0"
    fi
fi

if [ ! -e "${venv}" ]; then
    say "creating ${venv} with $("${python}" --version 2>&1) (${python})"
    "${python}" -m venv "${venv}" || die "could not create ${venv} with ${python} (Debian/Ubuntu: apt-get install python3-venv)"
    # keep any VENV out of git (Python >= 3.13 writes this file itself)
    [ -f "${venv}/.gitignore" ] || echo '*' >"${venv}/.gitignore"
fi
lock=$("${venv_python}" -m espnet_gated.envcheck --lock-path)

if [ "${relock}" = 1 ]; then
    # pip-tools in a throwaway venv of the same Python (a lock holds for one Python); PyPI alone (no pip config
    # files, find-links or extra constraints), so the lock installs on any machine of this platform
    tools=$(mktemp -d)
    scratch+=("${tools}")
    "${venv_python}" -m venv "${tools}"
    "${tools}/bin/python" -m pip install -q "pip<26" "pip-tools>=7.4"
    mkdir -p "$(dirname "${lock}")"
    say "resolving ${lock} with pip-compile${*:+ $*}"
    PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="tools/setup.sh --relock" \
        env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL "${tools}/bin/pip-compile" --quiet --extra test \
        --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --output-file "${lock}" "$@" setup.py \
        || die "pip-compile could not resolve setup.py (its error is above); ${lock} is unchanged"
fi

if [ "${ESPNET_GATED_UNLOCKED:-0}" = 1 ]; then
    say "ESPNET_GATED_UNLOCKED=1: not using ${lock}; setup.py's exact pins, everything else at its newest release"
    lock=
    mode=unlocked
elif [ ! -f "${lock}" ]; then
    locks=$(ls tools/lock 2>/dev/null | tr '\n' ' ')
    echo "setup: WARNING: no lock for this platform and Python (${lock} does not exist; locks: ${locks:-none})." >&2
    echo "setup: WARNING: installing with setup.py's exact pins only; everything else resolves to today's releases (untested)." >&2
    echo "setup: WARNING: to lock this platform: ${VENV:+VENV=${venv} }tools/setup.sh --relock, then run the tests and commit ${lock}." >&2
    lock=
    mode=unlocked-no-lock
else
    mode=locked
fi
if [ -n "${lock}" ]; then check=(--lock "${lock}"); else check=(--unlocked); fi

stamp=${venv}/.espnet_gated_installed
record="${mode} $(cat setup.py pyproject.toml ${lock:+"${lock}"} | cksum)"
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${record}" ]; then
    if "${venv_python}" -m espnet_gated.envcheck "${check[@]}"; then
        say "${venv} is up to date (${mode}${lock:+: ${lock}}); nothing to install"
        exit 0
    fi
    say "${venv} was installed from the same files but fails the check above: reinstalling"
fi

rm -f "${stamp}"
# pip >= 26 refuses espnet's dependency ci_sdr (a direct-URL extra); older pips install it
if "${venv_python}" -c "import sys, pip; sys.exit(int(pip.__version__.split('.')[0]) < 26)"; then
    "${venv_python}" -m pip install -q "pip<26"
fi
if [ -n "${lock}" ]; then
    say "installing into ${venv}: pip install -c ${lock} -e '.[test]' (a new venv: ~2-5 min from a warm pip cache, ~15 min cold)"
    install=(-c "${lock}" -e ".[test]")
else
    say "installing into ${venv}: pip install --upgrade --upgrade-strategy eager -e '.[test]'"
    install=(--upgrade --upgrade-strategy eager -e ".[test]")
fi
# torch's Linux wheels bring CUDA's libraries, hence the sizes
disk_note="a new venv takes ~6 GB and a cold install downloads ~2.5 GB more (pip cache purge empties pip's cache)"
free=$(free_gb "${venv}")
if awk -v free="${free}" 'BEGIN { exit !(free < 10) }'; then
    echo "setup: WARNING: ${free} GB free on the filesystem of ${venv}; ${disk_note}" >&2
fi
piplog=$(mktemp)
scratch+=("${piplog}")
# pip's errors go to stderr as they come and into piplog, read when pip fails
if ! { "${venv_python}" -m pip install -q "${install[@]}" 2>&1 >&3 | tee "${piplog}" >&2; } 3>&1; then
    if grep -q "No space left on device" "${piplog}"; then
        die "pip ran out of disk space (${free} GB free on the filesystem of ${venv} before it started, $(free_gb "${venv}") GB now): ${disk_note}; free some and run $0 again"
    fi
    "${venv_python}" -m espnet_gated.envcheck "${check[@]}" || true
    die "pip install ${install[*]} failed (pip's error is further above). A lock that names a release the registry no longer serves: ${VENV:+VENV=${venv} }tools/setup.sh --relock; to install without the lock: ESPNET_GATED_UNLOCKED=1 $0"
fi
if ! "${venv_python}" -m espnet_gated.envcheck "${check[@]}"; then
    die "set-up failed: pip installed ${venv} but it does not pass the check above (its last line says what to do)"
fi
echo "${record}" >"${stamp}"
say "ready: ${venv} (${mode}${lock:+: ${lock}})"
