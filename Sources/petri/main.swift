import PetriCLI

PetriCommand.main()
