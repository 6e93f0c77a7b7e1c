from benchmarks.multihost.main import main

main()
