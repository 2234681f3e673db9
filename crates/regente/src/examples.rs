//! The example robots of `examples/robots/`, built into the binary so that
//! `regente up` can upload them on any machine.

use std::io::Write as _;

pub struct ExampleRobot {
    pub name: &'static str,
    /// Package files: path in the zip and contents.
    pub files: &'static [(&'static str, &'static str)],
    /// What the runtime's machine must have for the robot to run.
    pub needs: &'static [Need],
}

/// Something an example robot needs on the runtime's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Python3,
    RobotFramework,
}

macro_rules! example_file {
    ($robot:literal, $file:literal) => {
        (
            $file,
            include_str!(concat!("../../../examples/robots/", $robot, "/", $file)),
        )
    };
}

pub const EXAMPLES: &[ExampleRobot] = &[
    ExampleRobot {
        name: "hello-shell",
        files: &[
            example_file!("hello-shell", "robot.toml"),
            example_file!("hello-shell", "run.sh"),
        ],
        needs: &[],
    },
    ExampleRobot {
        name: "cnpj-python",
        files: &[
            example_file!("cnpj-python", "robot.toml"),
            example_file!("cnpj-python", "main.py"),
        ],
        needs: &[Need::Python3],
    },
    ExampleRobot {
        name: "report-robotframework",
        files: &[
            example_file!("report-robotframework", "robot.toml"),
            example_file!("report-robotframework", "tasks.robot"),
        ],
        needs: &[Need::Python3, Need::RobotFramework],
    },
];

impl ExampleRobot {
    /// The robot's package: a zip of its files.
    pub fn package(&self) -> anyhow::Result<Vec<u8>> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (path, contents) in self.files {
            zip.start_file(*path, options)?;
            zip.write_all(contents.as_bytes())?;
        }
        Ok(zip.finish()?.into_inner())
    }
}
