package composecompat

// project is one compose project the compatibility test writes to disk and loads three
// ways: with shipwatch's loader, with the compose SDK, and with the docker-compose CLI.
type project struct {
	name string
	// files maps a path relative to the app directory to its content. A path ending in
	// "/" is created as an empty directory (a bind-mount source).
	files map[string]string
	// compose lists the compose files, merged in order; the others are support files.
	compose []string
	// profiles to enable; nil for none.
	profiles []string
}

// projects covers each area the config hash depends on and shipwatch supports. Values are
// dummies: none of them is a secret.
func projects() []project {
	return []project{
		{
			name:    "plain",
			compose: []string{"compose.yaml"},
			files: map[string]string{"compose.yaml": `
services:
  web:
    image: shipwatch-compat/app:1
    command: ["-listen", ":8080"]
`},
		},
		{
			name:    "envfile",
			compose: []string{"compose.yaml"},
			files: map[string]string{
				".env":      "TAG=1\nGREETING=hello\n",
				"app.env":   "FROM_FILE=one\nOVERRIDDEN=from-file\n# a comment\nQUOTED=\"a b\"\n",
				"extra.env": "SECOND=two\n",
				"compose.yaml": `
services:
  web:
    image: shipwatch-compat/app:${TAG}
    env_file: [app.env, {path: extra.env, required: true}]
    environment:
      OVERRIDDEN: from-compose
      GREETING: ${GREETING}
      EMPTY: ""
      UNSET:
`,
			},
		},
		{
			name:    "wiring",
			compose: []string{"compose.yaml"},
			files: map[string]string{
				"data/":       "",
				"conf/a.conf": "x=1\n",
				"compose.yaml": `
services:
  db:
    image: shipwatch-compat/app:1
    volumes:
      - dbdata:/var/lib/data
      - ./conf/a.conf:/etc/a.conf:ro
    networks: [back]
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 1s
  web:
    image: shipwatch-compat/app:1
    depends_on:
      db:
        condition: service_healthy
    ports:
      - "127.0.0.1::8080"
      - target: 8081
        host_ip: 127.0.0.1
        protocol: tcp
    expose: ["9000"]
    volumes:
      - type: bind
        source: ./data
        target: /data
      - type: tmpfs
        target: /tmp
    networks:
      front: {}
      back:
        aliases: [api]
networks:
  front: {}
  back:
    driver: bridge
    internal: true
volumes:
  dbdata: {}
`,
			},
		},
		{
			name:    "labels",
			compose: []string{"compose.yaml"},
			files: map[string]string{"compose.yaml": `
services:
  a:
    image: shipwatch-compat/app:1
    labels:
      com.example.team: core
      com.example.tier: "1"
  b:
    image: shipwatch-compat/app:1
    labels: ["com.example.list=yes", "com.example.empty="]
`},
		},
		{
			name:    "replicas",
			compose: []string{"compose.yaml"},
			files: map[string]string{"compose.yaml": `
services:
  worker:
    image: shipwatch-compat/app:1
    deploy:
      replicas: 3
  scaled:
    image: shipwatch-compat/app:1
    scale: 2
  one:
    image: shipwatch-compat/app:1
    pull_policy: never
`},
		},
		{
			name:     "profiles",
			compose:  []string{"compose.yaml"},
			profiles: []string{"debug"},
			files: map[string]string{"compose.yaml": `
services:
  web:
    image: shipwatch-compat/app:1
  debug:
    image: shipwatch-compat/app:1
    profiles: [debug]
  tools:
    image: shipwatch-compat/app:1
    profiles: [tools]
`},
		},
		{
			name:    "override",
			compose: []string{"compose.yaml", "compose.override.yaml"},
			files: map[string]string{
				"compose.yaml": `
services:
  web:
    image: shipwatch-compat/app:1
    environment: [A=1, B=2]
    command: ["-listen", ":8080"]
`,
				"compose.override.yaml": `
services:
  web:
    environment:
      B: "3"
      C: "4"
    command: ["-listen", ":9090"]
`,
			},
		},
		{
			name:    "knobs",
			compose: []string{"compose.yaml"},
			files: map[string]string{
				"app.conf": "k=v\n",
				"compose.yaml": `
services:
  web:
    image: shipwatch-compat/app:1
    entrypoint: ["/app"]
    restart: unless-stopped
    user: "1000:1000"
    working_dir: /
    hostname: web1
    stop_signal: SIGTERM
    stop_grace_period: 20s
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    init: true
    tmpfs: [/run]
    extra_hosts: ["db.local=10.0.0.2"]
    dns: [10.0.0.53]
    logging:
      driver: json-file
      options: {max-size: 10m}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    sysctls: {net.core.somaxconn: "1024"}
    security_opt: ["no-new-privileges:true"]
    shm_size: 64m
    mem_limit: 128m
    cpus: 0.5
    pids_limit: 100
    tty: true
    stdin_open: true
    configs:
      - source: app
        target: /etc/app.conf
configs:
  app:
    file: ./app.conf
`,
			},
		},
		{
			// build: compose's hash ignores the build section and keeps image empty for a
			// service named by <project>-<service>; the Dockerfile starts from the locally
			// built test image, so no registry is needed.
			name:    "build",
			compose: []string{"compose.yaml"},
			files: map[string]string{
				"web/Dockerfile":    "FROM shipwatch-compat/app:1\nARG LEVEL\nCOPY message.txt /message.txt\n",
				"web/message.txt":   "hello\n",
				"web/.dockerignore": "*.md\n",
				"compose.yaml": `
services:
  web:
    build: ./web
    command: ["-listen", ":8080"]
  worker:
    image: shipwatch-compat/worker:1
    build:
      context: ./web
      dockerfile: Dockerfile
      args: {LEVEL: debug}
      target: ""
      labels: {team: compat}
      no_cache: true
    pull_policy: never
`,
			},
		},
		{
			name:    "secrets-resources",
			compose: []string{"compose.yaml"},
			files: map[string]string{
				"secrets/db.txt": "not-a-real-password\n",
				"api.key":        "not-a-real-key\n",
				"compose.yaml": `
services:
  api:
    image: shipwatch-compat/app:1
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64m, pids: 64}
        reservations: {cpus: "0.25", memory: 32m}
    secrets:
      - db_password
      - source: api_key
        target: key.txt
      - source: api_key
        target: /etc/api/key
  worker:
    image: shipwatch-compat/app:1
    mem_limit: 96m
    mem_reservation: 48m
    cpus: 0.3
    pids_limit: 50
    deploy:
      replicas: 2
  reader:
    image: shipwatch-compat/app:1
    secrets: [api_key]
secrets:
  db_password:
    file: ./secrets/db.txt
  api_key:
    file: ./api.key
`,
			},
		},
		{
			// compose stamps the hash with each service entry bound to the shared
			// container's ID (mode dropped); `config --hash` hashes the file as written.
			name:    "volumes-from",
			compose: []string{"compose.yaml"},
			files: map[string]string{"compose.yaml": `
services:
  first:
    image: shipwatch-compat/app:1
    volumes: [data:/data]
    deploy:
      replicas: 2
  second:
    image: shipwatch-compat/app:1
    volumes_from: ["first:ro"]
  third:
    image: shipwatch-compat/app:1
    volumes_from: [first]
    depends_on: [second]
volumes:
  data: {}
`},
		},
		{
			// compose binds network_mode/ipc/pid "service:x" to "container:<id>" of x's first
			// container before it hashes, together with volumes_from; the services share
			// one network namespace, so each listens on its own port.
			name:    "namespaces",
			compose: []string{"compose.yaml"},
			files: map[string]string{"compose.yaml": `
services:
  first:
    image: shipwatch-compat/app:1
    ipc: shareable
    volumes: [data:/data]
  second:
    image: shipwatch-compat/app:1
    command: ["-addr", ":8081"]
    network_mode: service:first
    ipc: service:first
    pid: service:first
  third:
    image: shipwatch-compat/app:1
    command: ["-addr", ":8082"]
    network_mode: "service:first"
    volumes_from: ["first:ro"]
    depends_on: [second]
volumes:
  data: {}
`},
		},
	}
}
