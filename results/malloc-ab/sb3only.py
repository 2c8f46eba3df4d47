import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench", "/work/main/scripts/bench.py")
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
r = bench.sb3_experts("Breakout", float(sys.argv[1]), 2000, 2)
print(json.dumps(round(r["steps_per_s"], 1)))
