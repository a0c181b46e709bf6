# The project's own bench workloads (test/bench/workloads/<name>), sourced by bench.sh and
# peers-project.sh: they need what ../shared/bench/workloads cannot express (a prepared base
# image imported into every builder; a third phase). Each workload folder is a build context,
# plus `deps-change/` (left out of the context: package.json and package-lock.json with one
# more dependency).
# Phases, each timed as build + push:
#   cold  no build cache and an empty cache mount; only the prepared base image is there
#   warm  the same again with one source file changed (src/index.js): the layer cache holds npm ci
#   deps  package.json + package-lock.json changed: npm ci runs again, on a warm cache mount
# shellcheck shell=bash
project_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_WORKLOADS_DIR=$project_dir/workloads
PROJECT_PHASES=(cold warm deps)

# project_workloads: the workload names
project_workloads() { ls "$PROJECT_WORKLOADS_DIR"; }

# project_base WORKLOAD: prints "TAR NAME", the base image's root filesystem tar and the name
# every builder imports it as (the name the workload's FROM says).
project_base() {
  case $1 in
    npm) echo "$("$project_dir/make-node-base.sh") bench/debian-nodejs:1" ;;
    *) echo "no base image for project workload $1" >&2; return 1 ;;
  esac
}

# project_context WORKLOAD DIR: a fresh copy of the workload's context in DIR.
project_context() {
  rm -rf "$2"; mkdir -p "$2"
  cp -a "$PROJECT_WORKLOADS_DIR/$1/." "$2/"
  rm -rf "$2/deps-change"
}

# project_phase WORKLOAD PHASE DIR: turns the context in DIR into the one PHASE builds. The same
# edits, byte for byte, for every builder.
project_phase() {
  case $2 in
    cold) ;;
    warm) printf '// bench: a changed source file\n' >>"$3/src/index.js" ;;
    deps) # new files (not rewritten in place), as a checkout or an editor's save makes them
      rm -f "$3/package.json" "$3/package-lock.json"
      cp "$PROJECT_WORKLOADS_DIR/$1/deps-change/package.json" "$PROJECT_WORKLOADS_DIR/$1/deps-change/package-lock.json" "$3/" ;;
    *) echo "unknown phase $2" >&2; return 1 ;;
  esac
}
