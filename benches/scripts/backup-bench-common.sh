# Shared by the backup comparison scripts (sourced, not run): the peers on PATH, the passwords,
# a page-cache re-read, and one way to run each tool against its repository WORKDIR/repo-TOOL
# (needs $bin, our binary, and $work).
export BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
tools=(hostguard restic)
command -v rustic >/dev/null && tools+=(rustic)
reread() { find "$1" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true; }
run_tool() { # tool verb args...
  local tool=$1 verb=$2 repo="$work/repo-$1"
  shift 2
  case $tool in
    hostguard) "$bin" -r "$repo" "$verb" "$@" ;;
    restic) restic -r "$repo" "$verb" "$@" ;;
    rustic) rustic -r "$repo" "$verb" "$@" ;;
  esac
}
export -f run_tool
export bin work
