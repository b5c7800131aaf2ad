from droptune.cli import main

main()
