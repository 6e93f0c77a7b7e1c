from benchmarks.measured_scaling.main import main

main()
