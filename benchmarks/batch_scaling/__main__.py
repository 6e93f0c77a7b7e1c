from benchmarks.batch_scaling.main import main

main()
