from autoclip.cli import main

raise SystemExit(main())
