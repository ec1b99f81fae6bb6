from adaptive.cli import main

raise SystemExit(main())
