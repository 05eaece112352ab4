#!/bin/sh
# The shell baseline for benches/decision.rs: the same decision ci-docker-prune makes
# (gates disk, runs, converge; then the plan: stopped containers and untagged, undigested,
# unused images older than UNTIL_SECS), made with the docker CLI the way a careful script does
# it (one listing per kind, not one call per object). Prints "skip <gate>" or one line per
# candidate: "container <id>" / "image <id>".
#
# env: DOCKER_HOST, THRESHOLD (80), PRUNE_PATH (/), PATTERN, UNTIL_SECS (86400)
set -eu
export TZ=UTC
threshold=${THRESHOLD:-80}
path=${PRUNE_PATH:-/}
pattern=${PATTERN:-'^[a-z0-9]{1,4}-[0-9a-f]{6}_ci_commoninternet_net_'}
until_secs=${UNTIL_SECS:-86400}

pct=$(df --output=pcent "$path" | tail -n 1 | tr -dc '0-9')
if [ "$pct" -lt "$threshold" ]; then echo "skip disk"; exit 0; fi

services=$(docker service ls --format '{{.Name}} {{.Replicas}}')
if printf '%s\n' "$services" | awk 'NF {print $1}' | grep -Eq -- "$pattern"; then
  echo "skip runs"; exit 0
fi
if printf '%s\n' "$services" | awk 'NF { split($2, r, "/"); if (r[1] + 0 < r[2] + 0) bad = 1 } END { exit !bad }'; then
  echo "skip converge"; exit 0
fi
ids=$(docker service ls -q)
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086
  if docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' $ids |
      grep -Eq '^(updating|rollback_started)$'; then
    echo "skip converge"; exit 0
  fi
fi

cutoff=$(( $(date +%s) - until_secs ))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

docker ps -a -q --no-trunc > "$tmp/cids"
if [ -s "$tmp/cids" ]; then
  # shellcheck disable=SC2046
  docker inspect --format '{{.Id}} {{.State.Status}} {{.Created}} {{.Image}}' $(cat "$tmp/cids")
fi | awk -v cutoff="$cutoff" '
  function ts(s,  d) { d = s; gsub(/[-T:Z]/, " ", d); sub(/\..*/, "", d); return mktime(d) }
  NF {
    stopped = ($2 == "exited" || $2 == "created" || $2 == "dead")
    if (stopped && ts($3) <= cutoff) print "container " $1; else print "used " $4
  }' > "$tmp/containers"

docker image ls --no-trunc --digests --format '{{.ID}} {{.Tag}} {{.Digest}} {{.CreatedAt}}' |
awk -v cutoff="$cutoff" -v used="$tmp/containers" '
  BEGIN { while ((getline l < used) > 0) { split(l, f, " "); if (f[1] == "used") inuse[f[2]] = 1 } }
  NF {
    id = $1
    if ($2 != "<none>" || $3 != "<none>") keep[id] = 1
    d = $4 " " $5; gsub(/[-:]/, " ", d); created[id] = mktime(d)
  }
  END {
    for (id in created)
      if (!(id in keep) && !(id in inuse) && created[id] <= cutoff) print "image " id
  }' > "$tmp/images"

grep '^container ' "$tmp/containers" || true
cat "$tmp/images"
