from tabsynth.cli.main import main

raise SystemExit(main())
