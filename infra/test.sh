#!/usr/bin/env bash
# Quick start, command 2: set up everything and run the whole test suite —
# lint, format check, type check, unit, integration (real redis-server, runc, overlayfs,
# S3 protocol) and end-to-end (real API, worker process, CLI) tests. Safe to re-run.
source "$(dirname "$0")/lib.sh"
setup_all "${TEST_PACKAGES[@]}"
cd "$STRATUM_ROOT"
log "lint, format and type checks"
npm run -s lint
npm run -s format:check
npm run -s typecheck
log "unit tests"
npx jest --selectProjects unit --ci
log "integration tests"
npx jest --selectProjects integration --ci --runInBand
log "end-to-end tests"
npx jest --selectProjects e2e --ci --runInBand
npx jest --selectProjects chaos --ci --runInBand
log "all tests passed"
