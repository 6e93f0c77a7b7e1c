from benchmarks.paper_methods.main import main

main()
