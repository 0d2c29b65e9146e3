from echoclients.load.cli import main

main()
