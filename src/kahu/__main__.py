from kahu.cli import main

main()
