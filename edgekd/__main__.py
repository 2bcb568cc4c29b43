from edgekd.app.cli import main

main()
