from adaptive.control.cli import main

raise SystemExit(main())
