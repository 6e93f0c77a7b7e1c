from benchmarks.large_batch_tuning.main import main

main()
