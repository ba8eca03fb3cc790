from vmbtool.cli import main

main()
