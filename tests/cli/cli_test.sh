#!/usr/bin/env bash
# The sparseloom CLI as a user and a script meet it: cli_test.sh SPARSELOOM_BIN CASE
# Runs from the source root (scenarios name the zoo as models/zoo). JSON is checked with python.
set -uo pipefail
bin=$1 case=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SPARSELOOM_CACHE_DIR=${SPARSELOOM_CACHE_DIR:-$tmp/cache}
py=$PWD/.venv/bin/python
[ -x "$py" ] || py=/usr/bin/python3
fail() { echo "FAIL: $*"; exit 1; }
jcheck() { "$py" -c "import json,sys; d=json.load(open('$1')); $2" || fail "JSON check: $2"; }

case $case in
help)
  "$bin" --help > "$tmp/h" || fail "--help exit $?"
  for s in inspect zoo profile estimate plan run bench report; do
    grep -q "^  $s" "$tmp/h" || fail "--help does not list $s"
    "$bin" $s --help > "$tmp/s" || fail "$s --help exit $?"
    grep -q "sparseloom $s" "$tmp/s" || fail "$s --help has no usage line"
  done ;;
usage)
  "$bin" plan > /dev/null 2>&1; [ $? = 2 ] || fail "missing argument is not exit 2"
  "$bin" frobnicate > /dev/null 2>&1; [ $? = 2 ] || fail "unknown subcommand is not exit 2"
  "$bin" inspect no/such/model.onnx > /dev/null 2> "$tmp/e"; [ $? = 1 ] || fail "missing file is not exit 1"
  grep -q "no/such/model.onnx" "$tmp/e" || fail "error does not name the file" ;;
inspect)
  "$bin" inspect models/zoo/fmnist_resnet/p90.onnx --json > "$tmp/p90.json" || fail "inspect p90 exit $?"
  "$bin" --json inspect models/zoo/fmnist_resnet/base.onnx > "$tmp/base.json" || fail "inspect base exit $?"
  jcheck "$tmp/p90.json" "assert d['kind']=='model' and d['ops']['Conv']>0 and len(d['layers'])>0 and d['parameters']>0
assert all(set(l)>={'node','op','shape','params','nonzeros','sparsity','bytes'} for l in d['layers'])
b=json.load(open('$tmp/base.json')); assert b['sparsity']<0.05<0.5<d['sparsity'], (b['sparsity'], d['sparsity'])"
  "$bin" inspect models/zoo/fmnist_resnet --variant p90 --json > "$tmp/task.json" || fail "inspect task exit $?"
  jcheck "$tmp/task.json" "assert d['kind']=='zoo_task' and len(d['blocks'])>=2 and len(d['variants'])>=2
assert {l['block'] for l in d['variant']['layers']}==set(range(len(d['blocks'])))"
  "$bin" inspect models/zoo/fmnist_resnet | grep -q "p90" || fail "table lacks the variant" ;;
plan)
  "$bin" plan bench/e2e/scenarios/demo.json --json --quick > "$tmp/plan.json"; rc=$?
  [ $rc = 0 ] || [ $rc = 3 ] || fail "plan exit $rc"
  jcheck "$tmp/plan.json" "assert d['scenario']=='demo-ar-mix' and len(d['tasks'])==3
assert all(set(t)>={'task','stitch','placement','predicted_accuracy_pct','predicted_latency_ms','meets_slo','reason'} for t in d['tasks'])
assert all(len(t['stitch'])==len(t['placement'])>0 and t['reason'] for t in d['tasks'])
assert d['feasible']==all(t['meets_slo'] for t in d['tasks']) and d['feasible']==($rc==0)"
  # The second call reads the cached profile: it must not profile again.
  "$bin" plan bench/e2e/scenarios/demo.json --quick > "$tmp/plan.txt" 2> "$tmp/plan.err"
  grep -q "meets SLO" "$tmp/plan.txt" || fail "plan table missing"
  ! grep -q "profiling" "$tmp/plan.err" || fail "the cached profile was not reused"
  "$bin" estimate bench/e2e/scenarios/demo.json --task digits_cnn --json > "$tmp/est.json" || fail "estimate exit $?"
  jcheck "$tmp/est.json" "f=d['tasks'][0]['fronts'][0]['points']; assert len(d['tasks'])==1 and len(f)>=1
assert all(a['latency_ms']<=b['latency_ms'] and a['accuracy_pct']<b['accuracy_pct'] for a,b in zip(f,f[1:]))" ;;
bad-scenario)
  "$bin" plan tests/cli/data/bad_scenario.json > /dev/null 2> "$tmp/e"; rc=$?
  [ $rc = 1 ] || fail "bad scenario exit $rc, expected 1"
  grep -q "tests/cli/data/bad_scenario.json:14: tasks\[0\].min_accuracy_pct" "$tmp/e" || { cat "$tmp/e"; fail "message lacks file:line: field"; } ;;
report)
  "$bin" report bench/results/e2e-demo.json -o "$tmp/rep" > /dev/null || fail "report exit $?"
  for f in report.md e2e-demo-slo-violations.png e2e-demo-slo-violations.svg e2e-demo-memory.png; do
    [ -s "$tmp/rep/$f" ] || fail "report did not write $f"
  done
  grep -q "e2e-demo-slo-violations.png" "$tmp/rep/report.md" || fail "page does not embed the plot"
  echo '{"nothing": 1}' > "$tmp/x.json"
  "$bin" report "$tmp/x.json" -o "$tmp/rep2" > /dev/null 2>&1; [ $? = 1 ] || fail "unknown JSON is not exit 1" ;;
schema)
  # The published JSON Schema accepts every committed scenario and rejects the bad one.
  "$py" - <<'PY' || fail "schema check"
import glob, json, jsonschema
schema = json.load(open("docs/schema/scenario.schema.json"))
jsonschema.Draft202012Validator.check_schema(schema)
for f in glob.glob("bench/e2e/scenarios/*.json") + ["tests/cli/data/ref_scenario.json"]:
    jsonschema.validate(json.load(open(f)), schema)
try:
    jsonschema.validate(json.load(open("tests/cli/data/bad_scenario.json")), schema)
    raise SystemExit("bad_scenario.json accepted")
except jsonschema.ValidationError:
    pass
PY
  ;;
zoo)
  # Assemble a task from three committed digits variants: the accuracies measured here must
  # match the committed manifest's (same models, same test data), and the result must load.
  z=models/zoo/digits_cnn
  pre=$("$py" -c "import json; p=json.load(open('$z/manifest.json'))['input']['preprocess']; print(p['scale'], p['mean'], p['std'])")
  read -r scale mean std <<< "$pre"
  "$bin" --json zoo "$tmp/mine" --base $z/base.onnx --variant p90=$z/p90.onnx --variant int8=$z/int8.onnx \
    --test-x $z/test_x.npy --test-y $z/test_y.npy --blocks 3 --stitches 4 --scale "$scale" --mean "$mean" --std "$std" \
    > "$tmp/zoo.json" || fail "zoo exit $?"
  jcheck "$tmp/zoo.json" "assert d['blocks']==3 and len(d['cuts'])==2 and d['variants']==3"
  "$bin" inspect "$tmp/mine" --json > "$tmp/mine.json" || fail "the assembled task does not load"
  jcheck "$tmp/mine.json" "ref={v['name']:v['accuracy_pct'] for v in json.load(open('$z/manifest.json'))['variants']}
got={v['name']:v['accuracy_pct'] for v in d['variants']}
assert all(abs(got[n]-ref[n])<0.06 for n in ('base','p90','int8')), (got, ref)"
  "$bin" zoo "$tmp/bad" --base $z/base.onnx --variant x=models/zoo/fmnist_resnet/p90.onnx --test-x $z/test_x.npy \
    --test-y $z/test_y.npy > /dev/null 2> "$tmp/e"; rc=$?
  [ $rc = 1 ] || fail "an incompatible variant is exit $rc, expected 1"
  grep -q "fmnist_resnet/p90.onnx" "$tmp/e" || fail "the error does not name the incompatible file" ;;
latency-zoo)
  # A latency-scale task (tools/zoo/latency_zoo.py: random weights, cut at stage boundaries,
  # accuracies borrowed from a committed task) loads, plans to a stitch over its five blocks,
  # and runs in the engine with every request accounted.
  "$py" tools/zoo/latency_zoo.py --out "$tmp/lat" --models mobilenetv2 --variants dense p90 int8_p90 > "$tmp/gen.log" 2>&1 ||
    { cat "$tmp/gen.log"; fail "latency_zoo.py failed"; }
  "$bin" inspect "$tmp/lat/mobilenetv2" --json > "$tmp/task.json" || fail "the latency-scale task does not load"
  jcheck "$tmp/task.json" "assert d['kind']=='zoo_task' and len(d['blocks'])==5 and len(d['variants'])==3, d"
  # Block files: one per (variant, block), listed in the manifest; the run below loads from them.
  "$bin" split "$tmp/lat/mobilenetv2" --json > "$tmp/split.json" || fail "split exit $?"
  jcheck "$tmp/split.json" "assert d[0]['variants']==3 and d[0]['block_files']==15 and d[0]['bytes']>0, d"
  "$bin" inspect "$tmp/lat/mobilenetv2" --json > "$tmp/task.json" || fail "inspect after split exit $?"
  jcheck "$tmp/task.json" "import os
assert all(len(v['block_files'])==5 and all(os.path.isfile('$tmp/lat/mobilenetv2/'+f) for f in v['block_files']) for v in d['variants']), d"
  jcheck "$tmp/lat/mobilenetv2/manifest.json" "src=json.load(open('models/zoo/digits_cnn/manifest.json'))
acc={v['name']:v['accuracy_pct'] for v in src['variants']}; acc['dense']=acc.pop('base')
assert d['accuracy_source']['task']=='digits_cnn' and all(v['accuracy_pct']==acc[v['name']] for v in d['variants'])
assert all(set(s['variants'])<={'dense','p90','int8_p90'} for s in d['stitch_check']['repair']['stitches'])"
  printf '%s\n' '{"schema_version": 1, "name": "latency-zoo-test", "zoo": "'"$tmp/lat"'", "duration_s": 1, "seed": 3,' \
    ' "processors": [{"name": "cpu0", "backend": "cpu", "kind": "cpu"}, {"name": "cpu1", "backend": "cpu", "kind": "cpu"}],' \
    ' "tasks": [{"task": "mobilenetv2", "slo_scale": 4, "min_accuracy_pct": 97, "rate_rps": 10}]}' > "$tmp/lat.json"
  "$bin" plan "$tmp/lat.json" --json --quick > "$tmp/plan.json" || fail "plan exit $?"
  jcheck "$tmp/plan.json" "t=d['tasks'][0]; assert len(t['stitch'])==5 and t['predicted_accuracy_pct']>=97 and t['meets_slo'], t"
  "$bin" run "$tmp/lat.json" --quick --duration 1 --policy sparseloom fixed -o "$tmp/run.json" > /dev/null 2>&1 || fail "run exit $?"
  jcheck "$tmp/run.json" "p=d['policies']; assert len(p)==2
assert all(x['requests_issued']==x['requests_accounted']>0 for x in p), p" ;;
opencl-loss)
  # `run` on an opencl processor (PoCL in CI) with its device lost 0.5 s into the load: the
  # requests before the loss are served on the device, the one in flight and every later one
  # end rejected or failed with the device named, none is lost, and the run exits cleanly.
  printf '%s\n' '{"schema_version": 1, "name": "opencl-loss-test", "zoo": "models/zoo", "duration_s": 2, "seed": 3,' \
    ' "processors": [{"name": "gpu0", "backend": "opencl", "kind": "gpu"}],' \
    ' "tasks": [{"task": "digits_cnn", "min_accuracy_pct": 90.0, "rate_rps": 40, "deadline_ms": 50}]}' > "$tmp/ocl.json"
  "$bin" run "$tmp/ocl.json" --quick --duration 2 --lose-device-after 0.5 -o "$tmp/run.json" > "$tmp/log" 2>&1 ||
    { cat "$tmp/log"; fail "run exit $?"; }
  jcheck "$tmp/run.json" "p=d['policies'][0]; o=p['overall']; g=p['processors'][0]
assert d['machine']['opencl_device'], d['machine']
assert p['requests_issued']==p['requests_accounted']==o['issued']>20, o
assert g['name']=='gpu0' and g['failures']==1 and not g['available'] and g['busy_ms']>0, g
assert o['on_time']>0 and o['rejected']+o['failed']>0, o
assert o['on_time']+o['late']+o['below_accuracy']+o['rejected']+o['failed']+o['cancelled']==o['issued'], o"
  # Injecting a device loss needs a device to lose: a clear error, exit 1.
  "$bin" run tests/cli/data/ref_scenario.json --quick --duration 1 --lose-device-after 0.5 > /dev/null 2> "$tmp/e"; rc=$?
  [ $rc = 1 ] || fail "--lose-device-after without an opencl processor is exit $rc, expected 1"
  grep -q "no opencl processor" "$tmp/e" || fail "the error does not say why: $(cat "$tmp/e")" ;;
*) fail "unknown case $case" ;;
esac
echo "ok: $case"
